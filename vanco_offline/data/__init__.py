"""Data layer: schema, validation, reward, conversion to MDPDataset, synthetic cohorts."""
