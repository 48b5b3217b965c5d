"""Every read and write of the records: the one module that commits.

Each function that changes data commits before it returns, so a caller that gets a row back
knows it is on disk; changes of patient data add their audit row in the same transaction.
Functions take the SQLAlchemy ``Session`` first and everything else by keyword.

The functions live in ``base`` (commit, audit), ``accounts`` (users, logins, the login rate
limit, the server processes' shared keys), ``records`` (patients, sessions, assessments),
``liveness`` (live streams' connections and frames, ending idle sessions), ``calibrations``
(a session's rest calibrations), ``alarms`` (streams' status, alarm transitions, pauses,
patients' limits), ``ward`` (reading the open beds and their alarms) and ``devices`` (bed
devices, their bindings and records); callers use them as ``crud.NAME``.
"""

from neopain.store.crud.accounts import (
    count_users, create_login_session, create_user, end_login_session, find_login_session,
    find_user, get_user, list_users, release_login_attempt, reserve_login_attempt, shared_key,
    update_user,
)
from neopain.store.crud.alarms import (
    MAX_PAUSE_MINUTES, StreamStatus, acknowledge_alarm, alarm_limits, escalate_alarm, get_alarm,
    pause_alarms, raise_alarm, read_status, resolve_alarm, set_alarm_limits, stream_status_of,
    write_status,
)
from neopain.store.crud.base import SYSTEM, audit, list_audit
from neopain.store.crud.calibrations import (
    add_calibration, calibration_reference, latest_calibration,
)
from neopain.store.crud.devices import (
    AgentFigures, DeviceRecord, DeviceView, ForeignSessionError, Refused, add_device_records,
    bind_device, create_device, current_session, device_of_token, find_device, get_device,
    list_devices, note_device_seen, revoke_device, session_devices,
    unbind_device,
)
from neopain.store.crud.history import (
    SessionSummary, audit_choices, newest_audit_id, session_summaries,
)
from neopain.store.crud.liveness import connect_session, end_idle_sessions, note_frame
from neopain.store.crud.ward import (
    Bed, list_alarms, open_beds, patients_of, recent_smoothed, unresolved_alarms,
)
from neopain.store.crud.records import (
    NewAssessment, add_assessment, count_assessments, create_patient, discard_session,
    end_session, record_image,
    get_assessment, get_patient, get_session, last_snapshot_state, list_assessments,
    list_sessions, search_patients, start_session, update_patient,
)

__all__ = [
    "add_assessment", "audit", "connect_session", "count_assessments", "count_users",
    "create_login_session", "create_patient", "create_user", "discard_session",
    "end_idle_sessions", "end_login_session", "end_session", "find_login_session", "find_user",
    "get_assessment", "get_patient", "get_session", "get_user", "last_snapshot_state",
    "list_assessments", "list_audit", "list_sessions", "list_users", "NewAssessment",
    "note_frame", "record_image", "release_login_attempt", "reserve_login_attempt",
    "search_patients", "shared_key", "start_session", "SYSTEM", "update_patient", "update_user",
    "SessionSummary", "audit_choices", "newest_audit_id", "session_summaries",
    "add_calibration", "calibration_reference", "latest_calibration",
    "MAX_PAUSE_MINUTES", "StreamStatus", "acknowledge_alarm", "alarm_limits", "escalate_alarm",
    "get_alarm",
    "pause_alarms", "raise_alarm", "read_status", "resolve_alarm", "set_alarm_limits",
    "write_status", "stream_status_of",
    "AgentFigures", "DeviceRecord", "DeviceView", "ForeignSessionError", "Refused",
    "add_device_records", "bind_device",
    "create_device", "current_session", "device_of_token", "find_device", "get_device",
    "list_devices", "note_device_seen", "revoke_device", "session_devices",
    "unbind_device",
    "Bed", "list_alarms", "open_beds", "patients_of", "recent_smoothed", "unresolved_alarms",
]
