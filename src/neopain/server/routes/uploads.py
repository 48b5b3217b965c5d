"""Assess an uploaded image or video into a patient's record.

The type is read from the file's first bytes, not its name or the browser's word: JPEG, PNG,
BMP and WebP images; MP4/MOV, AVI, WebM and MKV videos. Anything else is refused with 415, a
file over the size limit with 413, a file that does not decode with 422. An image adds one
assessment with its picture as the snapshot; a video is sampled at 2 frames per second (at
most its first 10 minutes) and recorded like a live session (snapshots at changes of state).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from neopain.data.images import ImageReadError, fit_within, read_image
from neopain.data.video.decode import VideoReadError, decode_frames, open_video
from neopain.server.deps import AccessError, Carer, Db, RowId, csrf_protect, server_state
from neopain.server.live import LiveService, Recorder
from neopain.server.render import flash, render
from neopain.server.routes.common import history_response, patient_or_404
from neopain.server.schemas import AssessmentOut, SessionOut, UploadOut
from neopain.store import crud
from neopain.store.crud import NewAssessment
from neopain.store.tables import Patient, User

router = APIRouter(dependencies=[Depends(csrf_protect)])
VIDEO_FPS = 2.0
MAX_VIDEO_S = 600.0
SNAPSHOT_SIDE = 1280
VALID = "JPEG, PNG, BMP or WebP images; MP4, MOV, AVI, WebM or MKV videos"


def sniff(head: bytes) -> tuple[str, str] | None:
    """(``"image"`` or ``"video"``, format) from a file's first 16 bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head.startswith(b"BM"):
        return "image", "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image", "WebP"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video", "AVI"
    if head[4:8] == b"ftyp":
        return "video", "MP4/MOV"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "WebM/MKV"
    return None


def _jpeg(frame: np.ndarray) -> bytes:
    frame = fit_within(frame, side=SNAPSHOT_SIDE)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def _assess_image(service: LiveService, db: Session, *, path: Path, patient: Patient,
                  user: User) -> UploadOut:
    try:
        frame = read_image(path, max_pixels=service.settings.max_image_pixels)
    except ImageReadError as error:
        raise AccessError(422, f"The image cannot be read: {error.reason}.") from None
    with service.borrowed_assessor() as assessor:
        result = assessor.step(frame, time_s=0.0)
    prediction = result.prediction
    session, row = crud.record_image(db, actor=user, patient=patient, assessment=NewAssessment(
        face_found=result.face is not None, model=service.model_name(),
        latency_ms=result.latency_ms, label=None if prediction is None else prediction.label,
        prob_pain=None if prediction is None else prediction.prob_pain,
        smoothed=result.smoothed, state=result.state, uncertain=result.uncertain,
        changed=result.changed, face_box=None if result.face is None else result.face.box,
        snapshot=_jpeg(frame)))
    return UploadOut(session=SessionOut.of(session), kind="image", frames=1,
                     faces=int(result.face is not None), saved=[AssessmentOut.of(row)])


def _assess_video(service: LiveService, db: Session, store: sessionmaker[Session], *,
                  path: Path, patient: Patient, user: User) -> UploadOut:
    """``VIDEO_FPS`` frames a second, placed by their container timestamps, up to
    ``MAX_VIDEO_S``; the session starts with the first frame that decodes. A decoding error
    keeps what was assessed before it (422); any other failure removes the session."""
    session, recorder = None, None
    saved, frames, faces, next_s = [], 0, 0, 0.0
    max_pixels = service.settings.max_image_pixels
    try:
        with open_video(path, max_pixels=max_pixels) as capture, \
                service.borrowed_assessor() as assessor:
            for decoded in decode_frames(capture):
                if decoded.time_s > MAX_VIDEO_S:
                    break
                if session is None:
                    session = crud.start_session(db, actor=user, patient=patient,
                                                 source="video", model=service.model_name())
                    recorder = Recorder(store, session_id=session.id,
                                        interval_s=service.settings.timeline_interval_s)
                if decoded.time_s < next_s:
                    continue
                result = assessor.step(decoded.image, time_s=decoded.time_s)
                frames += 1
                faces += result.face is not None
                row, _ = recorder.record(
                    result, jpeg=lambda image=decoded.image: _jpeg(image),
                    offset_s=decoded.time_s,
                    when=session.started_at + timedelta(seconds=decoded.time_s))
                if row is not None:
                    saved.append(row)
                next_s += 1.0 / VIDEO_FPS
    except VideoReadError as error:
        if session is not None:  # what was assessed before the damage stays in the record
            crud.end_session(db, session, actor=user)
        raise AccessError(422, f"The video cannot be read: {error}.") from None
    except BaseException:
        if session is not None:  # a failed upload leaves no half-recorded session behind
            crud.discard_session(db, session, actor=user)
        raise
    if session is None:
        raise AccessError(422, "The video cannot be read (no frame decodes).")
    crud.end_session(db, session, actor=user)
    return UploadOut(session=SessionOut.of(session), kind="video", frames=frames, faces=faces,
                     saved=[AssessmentOut.of(r) for r in saved])


def assess_upload(request: Request, db: Session, *, user: User, patient_id: int,
                  file: UploadFile) -> UploadOut:
    """Check an upload's size and type, assess it, record it (audited as a session start)."""
    patient = patient_or_404(db, patient_id)
    limit = server_state(request).settings.max_upload_mb
    if file.size is not None and file.size > limit * 1e6:
        raise AccessError(413, f"The file is larger than the limit of {limit:g} MB.")
    head = file.file.read(16)
    kind = sniff(head)
    if kind is None:
        raise AccessError(415, f"Not a supported file type; valid: {VALID}.")
    if len(head) < 16:
        raise AccessError(422, "The file is too short to be an image or a video.")
    file.file.seek(0)
    service: LiveService = request.app.state.live
    with service.upload_slot(), tempfile.TemporaryDirectory(prefix="neopain-upload-") as folder:
        path = Path(folder) / ("upload.jpg" if kind[0] == "image" else "upload.video")
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out)
        if kind[0] == "image":
            return _assess_image(service, db, path=path, patient=patient, user=user)
        return _assess_video(service, db, server_state(request).store, path=path,
                             patient=patient, user=user)


@router.post("/api/patients/{patient_id}/uploads", response_model=UploadOut, status_code=201,
             tags=["assessments"])
def upload_api(request: Request, db: Db, user: Carer, patient_id: RowId,
               file: Annotated[UploadFile, File(description=VALID)]) -> UploadOut:
    """Assess an image or a video into the patient's record (see the module text for rules)."""
    return assess_upload(request, db, user=user, patient_id=patient_id, file=file)


@router.post("/patients/{patient_id}/upload", include_in_schema=False)
def upload_form(request: Request, db: Db, user: Carer, patient_id: RowId,
                file: Annotated[UploadFile, File()]) -> Response:
    """Assess an upload from the history page; back on that page either way, with a notice
    that says what was saved or why nothing was (and the refusal's status)."""
    try:
        result = assess_upload(request, db, user=user, patient_id=patient_id, file=file)
    except AccessError as error:
        if error.status in (401, 403):
            raise
        patient = crud.get_patient(db, patient_id)
        if patient is None:
            response = render(request, "error.html", status=error.status,
                              message=error.message, back="/patients")
        else:
            response = history_response(request, db, user, patient, status=error.status,
                                        message=f"Upload refused: {error.message}")
        response.headers.update(error.headers)  # Retry-After of a busy server
        return response
    response = RedirectResponse(f"/patients/{patient_id}?uploaded={result.session.id}",
                                status_code=303)
    if not result.faces:
        found = "no face found"
    elif result.kind == "image":
        found = "a face found"
    else:
        found = f"a face in {result.faces} of {result.frames} frames"
    saved = len(result.saved)
    flash(response, request, f"The {result.kind} was assessed ({found}); {saved} "
                             f"{'assessment' if saved == 1 else 'assessments'} saved.")
    return response
