"""The preprocessor chooses the pixels: which parts of a frame the model looks at (issue 21).

Per source, one of three modes (:class:`RegionMode`):

- ``full``: the whole frame resized to the model input (streamprep's behaviour before regions);
- ``tiles``: overlapping native-resolution tiles over the whole frame (:func:`tile_plan`), their detections
  merged so that an object cut by a tile border is reported once (:func:`merge`);
- ``motion``: native-resolution regions where something moves, re-checks of still objects every
  ``recheck_s``, carried detections in between, and no model run at all on a frame where nothing happens
  (:class:`MotionRegions`).

Everything here is pure and synchronous (numpy/OpenCV), in source pixels. The model sees each
:class:`Region` through its normal preprocessing, either as a crop (:func:`crop`) or as the preprocessor's
region of interest (``Preprocessor.into(..., region=region.roi)``); both give the same tensor.
"""

from streamprep.regions.merge import MergeSettings, merge, nms
from streamprep.regions.motion import (
    MotionDetector,
    MotionRegions,
    MotionResult,
    MotionSettings,
    MotionState,
    Reported,
    plan_motion,
)
from streamprep.regions.tiles import tile_plan, tile_side
from streamprep.regions.values import Region, RegionKind, RegionMode, RegionPlan, Tracked, crop, to_source

__all__ = [
    "MergeSettings",
    "MotionDetector",
    "MotionRegions",
    "MotionResult",
    "MotionSettings",
    "MotionState",
    "Region",
    "RegionKind",
    "RegionMode",
    "RegionPlan",
    "Reported",
    "Tracked",
    "crop",
    "merge",
    "nms",
    "plan_motion",
    "tile_plan",
    "tile_side",
    "to_source",
]
