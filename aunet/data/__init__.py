"""Data: the HDF5 frame store, datasets, augmentation, folds, DataModules, synthetic faces."""
