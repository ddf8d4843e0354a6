"""The review desk: ``ReviewService`` (``service``, with the queue listing in ``queue`` and
look-up/fetch in ``lookup``), what a case page shows (``case_view``, ``case_sections``), what
may be decided (``decisions``), linked identities (``linking``), the search and paging rules.

May import: faceid.core, faceid.api, faceid.access, faceid.store.
"""
