"""HTTP for every request nbmodels makes: one client, redirects with origin-bound credentials,
retries."""
