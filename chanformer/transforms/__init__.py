"""Input transforms: audio front-ends, channel sampling, time-series augmentation."""
