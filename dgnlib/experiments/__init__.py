"""One module per figure family, named after what its figure measures, and the variant comparison they share."""
