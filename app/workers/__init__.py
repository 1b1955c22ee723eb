"""arq jobs: the slow part, scaled separately from the API."""
