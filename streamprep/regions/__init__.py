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

Wiring it into a branch (per source, per sampled frame; all of it CPU work, so in the preprocessing worker,
off the event loop)::

    # once per source (and again when its frame size changes)
    side = max(model.spec.width, model.spec.height)
    tiles = tile_plan(width, height, side, tile_scale, tile_overlap, full_frame)   # mode "tiles": fixed plan
    state = MotionRegions(width, height, side, MotionSettings(...))               # mode "motion"

    # per frame
    plan = tiles if mode is RegionMode.TILES else state.plan(frame.image, pts, frame.pixel_format)
    per_region = []
    for region in plan.regions:                    # one batch slot each; no regions: no model run at all
        image = crop(frame.image, region, frame.pixel_format)
        geometry = model.preprocessor.into(image, slot, frame.pixel_format, None, frame.color_matrix,
                                           frame.color_range)
        per_region.append(to_source(model.decoder.decode(outputs, i, geometry).detections, region))
    found = merge(plan, per_region, MergeSettings(iou_threshold=<the decoder's NMS IoU>))
    if mode is RegionMode.MOTION:
        reported = state.update(plan, found, pts)  # publish reported.found, and reported.carried as carried
    else:
        publish found

A branch does exactly this through :class:`SourceRegions` (:mod:`streamprep.regions.source`), one per source
with its :class:`RegionSettings` (the config's ``regions`` keys).

``pts`` is the frame's time in seconds on the source's timeline (``frame.pts``; a frame without one needs a
stand-in such as its capture time on the monotonic clock). Cropping first keeps the preprocessor's
per-geometry caches to one entry per region *size* (motion regions come in 32-px steps); passing
``region.roi`` instead creates one per region *position*.
"""

from streamprep.regions.merge import MergeSettings, merge, nms
from streamprep.regions.motion import MotionDetector, MotionResult, MotionSettings, MotionState
from streamprep.regions.planner import MotionRegions, Reported, plan_motion
from streamprep.regions.source import RegionSettings, SourceRegions
from streamprep.regions.tiles import tile_plan, tile_side
from streamprep.regions.values import Region, RegionKind, RegionPlan, Tracked, crop, to_source
from streamprep.values.frames import RegionMode

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
    "RegionSettings",
    "Reported",
    "SourceRegions",
    "Tracked",
    "crop",
    "merge",
    "nms",
    "plan_motion",
    "tile_plan",
    "tile_side",
    "to_source",
]
