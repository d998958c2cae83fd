"""Input transforms: audio front-ends, channel sampling."""
from chanformer.transforms.channel_sampling import HierarchicalChannelSampling, hierarchical_channel_sampling  # noqa: F401
