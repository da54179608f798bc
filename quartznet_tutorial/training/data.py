"""The data of a training run: the Speech Commands splits as this process's pipelines.

:func:`build_data` reads the three splits of ``config.data_root`` (limited to
``config.limit_clips``, the training split rebalanced on request) and makes each a
:func:`~quartznet_tutorial.datasets.pipeline.make_pipeline` pipeline of this rank's shard, rank 0
first: it fills the caches the other ranks then read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from quartznet_tutorial.utils.runtime import Env, barrier

if TYPE_CHECKING:
    from quartznet_tutorial.training.config import TrainConfig

__all__ = ["TrainData", "build_data"]


class TrainData(NamedTuple):
    """A run's class names and this rank's pipelines of the three splits.

    Args:
        labels (list of str): class names, in the order of the model's outputs.
        train (Pipeline): the training split (shuffled, augmented): ``len()`` batches,
            ``batches(epoch, start=0)``.
        val (Pipeline): the validation split.
        test (Pipeline): the test split.
        clips (dict): clips per split; a resumed run must see the same data.
    """

    labels: list[str]
    train: Any
    val: Any
    test: Any
    clips: dict[str, int]


def build_data(config: TrainConfig, env: Env) -> TrainData:
    """SpeechCommands splits -> this rank's pipelines (rank 0 first: it fills the caches)."""
    from quartznet_tutorial.audio.augment import AugmentConfig
    from quartznet_tutorial.audio.features import FeatureConfig
    from quartznet_tutorial.datasets.pipeline import make_pipeline
    from quartznet_tutorial.datasets.speech_commands import SpeechCommands
    from quartznet_tutorial.datasets.subsets import limit_clips, rebalance

    if config.data_root is None:
        raise ValueError("data_root is not set: pass the extracted Speech Commands folder")

    def build() -> TrainData:
        pipes, clips = {}, {}
        for subset in ("training", "validation", "testing"):
            ds = SpeechCommands(
                config.data_root,
                subset=subset,
                version=config.version,
                words=config.words,
                task=config.task,
                skip_bad_files=config.skip_bad_files,
                progress=config.progress and env.main,
            )
            train = subset == "training"
            ds = limit_clips(ds, config.limit_clips)
            if train and config.rebalance:
                ds = rebalance(ds)
            clips[subset] = len(ds)
            pipes[subset] = make_pipeline(
                ds,
                batch_size=config.batch_size,
                train=train,
                device=env.device,
                kind=config.pipeline,
                augment=AugmentConfig() if train and config.augment else None,
                features=FeatureConfig(frames=config.frames),
                seed=config.seed,
                rank=env.rank,
                world_size=env.world_size,
                num_workers=config.num_workers,
                progress=config.progress,
            )
        return TrainData(ds.labels, pipes["training"], pipes["validation"], pipes["testing"], clips)

    if not env.main:
        barrier(env)  # rank 0 first: it fills the caches the others read
    data = build()
    if env.main:
        barrier(env)
    return data
