"""Lightning tasks: a system around an injected encoder."""

from chanformer.tasks.base import ChannelTask
from chanformer.tasks.classification import ClassificationTask
from chanformer.tasks.forecasting import ForecastingTask
from chanformer.tasks.mil import MILTask

__all__ = ["ChannelTask", "ClassificationTask", "ForecastingTask", "MILTask"]
from chanformer.tasks.pretrain_mvpformer import NextSegmentPretrainTask  # noqa: E402
from chanformer.tasks.seizure import SeizureDetectionTask  # noqa: E402

__all__ += ["NextSegmentPretrainTask", "SeizureDetectionTask"]
from chanformer.tasks.pretrain_image import MaskedChannelPretrainTask  # noqa: E402

__all__ += ["MaskedChannelPretrainTask"]
from chanformer.tasks.enhancement import EnhancementTask  # noqa: E402
from chanformer.tasks.speaker import SpeakerVerificationTask  # noqa: E402

__all__ += ["EnhancementTask", "SpeakerVerificationTask"]
