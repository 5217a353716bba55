"""Delivery tooling for vod-operator: CR reference, chart/manifest sync, and the demo."""
