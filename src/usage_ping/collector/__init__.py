"""The central service ("versions app"): receives pings, stores them, scores each instance."""
