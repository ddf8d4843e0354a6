"""The FaceID side: the get_result vocabularies (``vocab``), the typed model (``model``), its
tolerant parser (``parse``), image decoding (``images``), the raw document's image elision
(``rawdoc``), the HTTP client (``client``) with secret redaction (``redact``), and the
FaceID-compatible simulator (``api.simulator``).

May import: faceid.core only.
"""
