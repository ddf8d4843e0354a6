"""Built-in FaceID Lite simulator: generated get_result cases served over real HTTP.

Used as the default backend in demo mode and by the tests. Nothing here imports Streamlit or
any other part of the app. ``generate.py`` and ``people.py`` make the cases, ``backend.py``
holds them with the quota and fault injection, ``server.py`` serves them over HTTP; see
``server.py`` for the choices the FaceID page leaves open and for the simulator-only ``/_sim/*``
endpoints.
"""

from faceid.api.simulator.backend import (
    ERROR_HTTP_STATUS,
    FakeClock,
    SimClock,
    SimulatorState,
    http_status_for,
    images_allowed,
    shape_response,
)
from faceid.api.simulator.choices import (
    BILLED_VERIFY_ERRORS,
    FAIL_REASONS,
    IMAGE_KEYS,
    LEGALITY_KEYS,
    MEGLIVE_FLASH_COUNTERS,
    PROCEDURE_TYPES,
    SELFIE_FRONT_COUNTERS,
    SELFIE_SIDE_COUNTERS,
    STATUSES,
    STILL_TYPES,
    THRESHOLDS,
    UPLOAD_COUNTERS,
    VERIFY_ERRORS,
    WEBRTC_COUNTERS,
)
from faceid.api.simulator.generate import generate_batch, generate_result
from faceid.api.simulator.people import (
    Person,
    id_check_digit,
    is_valid_id_number,
    make_person,
    person_for_seed,
)
from faceid.api.simulator.server import API_PATH, SimServer, serve, start_in_thread

__all__ = [
    "API_PATH",
    "BILLED_VERIFY_ERRORS",
    "ERROR_HTTP_STATUS",
    "FAIL_REASONS",
    "IMAGE_KEYS",
    "LEGALITY_KEYS",
    "MEGLIVE_FLASH_COUNTERS",
    "PROCEDURE_TYPES",
    "SELFIE_FRONT_COUNTERS",
    "SELFIE_SIDE_COUNTERS",
    "STATUSES",
    "STILL_TYPES",
    "THRESHOLDS",
    "UPLOAD_COUNTERS",
    "VERIFY_ERRORS",
    "WEBRTC_COUNTERS",
    "FakeClock",
    "Person",
    "SimClock",
    "SimServer",
    "SimulatorState",
    "generate_batch",
    "generate_result",
    "http_status_for",
    "id_check_digit",
    "images_allowed",
    "is_valid_id_number",
    "make_person",
    "person_for_seed",
    "serve",
    "shape_response",
    "start_in_thread",
]
