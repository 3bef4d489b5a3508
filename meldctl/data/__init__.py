"""MELD on disk: layout, label CSVs, download and extraction, manifests, datasets, the feature cache."""
