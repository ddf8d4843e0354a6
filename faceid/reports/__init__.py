"""Views across cases and what leaves the desk: ``InsightsService`` (``insights``, with the
failed-verification audit in ``failures``, the compare page in ``compare`` and the shared
definitions in ``queries``), the governed CSV export (``export``) and the retention purge.

May import: faceid.core, faceid.api, faceid.access, faceid.store, faceid.review.
"""
