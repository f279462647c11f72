"""From detections to events: tracking, zones and lines, one event per object visit, snapshots.

``tracking`` (the tracker), ``geometry`` (zones, lines, hysteresis), ``settings`` (config models),
``engine`` (per-source engines and the hub a pipeline holds), ``values`` (events and their JSON form),
``snapshots`` (JPEG rendering and the bounded store), ``discovery`` (Home Assistant MQTT discovery).
"""
