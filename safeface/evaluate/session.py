"""What every evaluation command shares: the pipeline built from its options, the embedding
cache and where reports go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..hazmat.vision import DEFAULT_ENGINE, DEFAULT_PICK, Pipeline, PipelineConfig, get_engine
from .embedcache import EmbeddingCache, EmbedStats, Record, check_cache_location, config_fingerprint, embed_images

HOG_ONLY = (("hog", 1),)


@dataclass(frozen=True)
class EvalOptions:
    engine: str = DEFAULT_ENGINE
    flip: bool = True
    jitter: int = 0
    fallback: bool = True
    center_prior: bool = False
    pick: str = DEFAULT_PICK
    progress: bool = True

    def pipeline_config(self) -> PipelineConfig:
        cfg = PipelineConfig(flip=self.flip, jitter=self.jitter, center_prior=self.center_prior, pick=self.pick)
        return cfg if self.fallback else cfg.with_(steps=HOG_ONLY)

    def to_dict(self) -> dict[str, Any]:
        cfg = self.pipeline_config()
        return {"engine": self.engine, "detectors": [f"{d}x{u}" for d, u in cfg.steps], "flip": self.flip,
                "jitter": self.jitter, "center_prior": self.center_prior, "pick": self.pick}


@dataclass
class Session:
    options: EvalOptions
    pipeline: Pipeline
    cache: Optional[EmbeddingCache]

    @classmethod
    def open(cls, options: EvalOptions, cache_dir: Optional[Path], workspace: Optional[Path] = None) -> "Session":
        pipeline = Pipeline(get_engine(options.engine), options.pipeline_config())
        cache = None
        if cache_dir is not None:
            check_cache_location(cache_dir, workspace)
            cache = EmbeddingCache(Path(cache_dir), config_fingerprint(pipeline))
        return cls(options, pipeline, cache)

    def embed(self, paths: Sequence[Path]) -> tuple[dict[Path, Record], EmbedStats]:
        return embed_images(self.pipeline, paths, self.cache, self.options.progress)
