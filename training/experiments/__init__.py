"""The thesis's experiments as reproducible tables: methods are pluggable training-data sources."""
