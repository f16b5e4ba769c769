"""Golden tests: our modules against numbers computed by the official code (README.md here)."""
