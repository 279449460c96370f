"""Pure data functions: readers, cleaning, schemas, quality rules, augmentation, splitting."""
