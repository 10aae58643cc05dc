"""Reports over daily rollups: mail flow per day, TLS breakdowns and insights per connector."""
