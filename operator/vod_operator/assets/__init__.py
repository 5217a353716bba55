"""The VideoAsset side of the operator: one packaging Job per asset revision.

`plan` (pure): what the spec asks for (ladder, revision) or why it must wait; `job` (pure):
the Job manifests; `report` (pure): the pod's progress lines and result; `status` (pure): the
VideoAsset status; `reconcile`: the one pass that reads, applies and writes.
"""
