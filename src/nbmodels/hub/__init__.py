"""The Hugging Face Hub: its API, and where its files live on disk (cache and local_dir)."""
