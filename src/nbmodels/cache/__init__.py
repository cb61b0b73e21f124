"""What is on disk: listing, safe removal and verification of the Hugging Face cache."""
