"""A pipeline's configuration is checked when it is made: a detection step that would upsample
past what the pixel budget can pay for, or a setting of the wrong kind, is an InvalidArgument,
never a process killed for its memory at the first detect or a bare ValueError."""

from __future__ import annotations

from typing import Any

import pytest

from safeface.errors import InvalidArgument
from safeface.hazmat.vision import PipelineConfig


@pytest.mark.parametrize("steps", [(("masked", 40),), (("hog", -1),), (("hog", True),), (("hog", 1.5),),
                                   "hog", None, (("hog",),)])
def test_a_detection_step_past_the_upsample_bound_is_refused_when_configured(steps: Any) -> None:
    """A host configures an upsample of 40 (the budget shrank the image to a pixel and dlib then
    upsampled it 40 times: killed for memory), a negative or fractional one, or no pairs at all:
    refused at construction, before any image is read."""
    with pytest.raises(InvalidArgument, match="steps"):
        PipelineConfig(steps=steps)


@pytest.mark.parametrize("setting", [{"pick": "tallest"}, {"threads": -1}, {"detect_megapixels": float("nan")}])
def test_a_setting_of_the_wrong_kind_is_an_invalid_argument(setting: dict[str, Any]) -> None:
    """An unknown pick rule, negative threads or a NaN budget: InvalidArgument, the typed error."""
    with pytest.raises(InvalidArgument):
        PipelineConfig(**setting)
    assert PipelineConfig().steps[-1] == ("masked", 1)
