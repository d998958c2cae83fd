"""Lightning tasks: a system around an injected encoder."""

from chanformer.tasks.base import ChannelTask
from chanformer.tasks.classification import ClassificationTask
from chanformer.tasks.forecasting import ForecastingTask
from chanformer.tasks.mil import MILTask
from chanformer.tasks.pretrain_mvpformer import NextSegmentPretrainTask
from chanformer.tasks.seizure import SeizureDetectionTask

__all__ = [
    "ChannelTask",
    "ClassificationTask",
    "ForecastingTask",
    "MILTask",
    "NextSegmentPretrainTask",
    "SeizureDetectionTask",
]
