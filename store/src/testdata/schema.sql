-- The schema as server/src/store.rs's MIGRATIONS leave it (dumped from sqlite_master), for
-- this crate's unit tests until the migrations move into this crate (store/src/schema.rs):
-- then test_db() applies them instead and this file goes.
CREATE TABLE meta (
         key TEXT PRIMARY KEY,
         value BLOB NOT NULL
     ) STRICT;
CREATE TABLE consultations (
         id TEXT PRIMARY KEY,
         kind TEXT NOT NULL CHECK (kind IN ('visit', 'conference')),
         title TEXT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('open', 'ended')),
         created_at INTEGER NOT NULL,
         ended_at INTEGER
     , facility_id INTEGER REFERENCES facilities(id), end_reason TEXT
         CHECK (end_reason IN ('ended', 'abandoned', 'server_restart', 'cancelled'))) STRICT;
CREATE TABLE links (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         role TEXT NOT NULL,
         name TEXT NOT NULL,
         facility TEXT,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     ) STRICT;
CREATE TABLE attendance (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         name TEXT NOT NULL,
         role TEXT NOT NULL,
         facility TEXT,
         joined_at INTEGER NOT NULL,
         left_at INTEGER,
         leave_reason TEXT
     , licence_number TEXT) STRICT;
CREATE INDEX attendance_by_consultation ON attendance(consultation_id);
CREATE TABLE audit (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         action TEXT NOT NULL,
         consultation_id TEXT NOT NULL,
         actor TEXT NOT NULL,
         detail TEXT NOT NULL,
         prev_hash TEXT NOT NULL,
         hash TEXT NOT NULL
     ) STRICT;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE facilities (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         tier TEXT NOT NULL CHECK (tier IN ('province', 'district', 'commune_station', 'cdc')),
         parent_id INTEGER REFERENCES facilities(id),
         created_at INTEGER NOT NULL
     , phone TEXT) STRICT;
CREATE UNIQUE INDEX facilities_by_parent_and_name ON facilities(ifnull(parent_id, 0), name);
CREATE TABLE practitioners (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         title TEXT NOT NULL,
         licence_number TEXT NOT NULL UNIQUE,
         specialty TEXT NOT NULL,
         facility_id INTEGER NOT NULL REFERENCES facilities(id),
         created_at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX practitioners_by_facility ON practitioners(facility_id);
CREATE TABLE staff (
         id INTEGER PRIMARY KEY,
         username TEXT NOT NULL UNIQUE,
         display_name TEXT NOT NULL,
         password_hash TEXT NOT NULL,
         totp_secret BLOB NOT NULL,
         totp_last_step INTEGER NOT NULL DEFAULT 0,
         role TEXT NOT NULL CHECK (role IN ('doctor', 'nurse', 'coordinator', 'admin')),
         facility_id INTEGER NOT NULL REFERENCES facilities(id),
         practitioner_id INTEGER UNIQUE REFERENCES practitioners(id),
         disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
         created_at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX staff_by_facility ON staff(facility_id);
CREATE TABLE staff_sessions (
         token_hash BLOB PRIMARY KEY,
         staff_id INTEGER NOT NULL REFERENCES staff(id),
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         last_seen_at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX staff_sessions_by_staff ON staff_sessions(staff_id);
CREATE TABLE consents (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         text_version TEXT NOT NULL,
         remote_examination INTEGER NOT NULL CHECK (remote_examination IN (0, 1)),
         third_parties INTEGER NOT NULL CHECK (third_parties IN (0, 1)),
         recording INTEGER NOT NULL CHECK (recording IN (0, 1)),
         at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX consents_by_consultation ON consents(consultation_id);
CREATE TABLE queues (
         id INTEGER PRIMARY KEY,
         facility_id INTEGER NOT NULL REFERENCES facilities(id),
         specialty TEXT NOT NULL,
         name TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         UNIQUE (facility_id, specialty)
     ) STRICT;
CREATE TABLE rosters (
         id INTEGER PRIMARY KEY,
         queue_id INTEGER NOT NULL REFERENCES queues(id),
         staff_id INTEGER NOT NULL REFERENCES staff(id),
         weekday INTEGER CHECK (weekday BETWEEN 0 AND 6),
         start_min INTEGER NOT NULL CHECK (start_min BETWEEN 0 AND 1440),
         end_min INTEGER NOT NULL CHECK (end_min BETWEEN 0 AND 1440),
         CHECK (start_min < end_min)
     ) STRICT;
CREATE INDEX rosters_by_queue ON rosters(queue_id);
CREATE TABLE appointments (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL UNIQUE REFERENCES consultations(id),
         starts_at INTEGER NOT NULL,
         duration_min INTEGER NOT NULL CHECK (duration_min BETWEEN 5 AND 240),
         created_at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX appointments_by_start ON appointments(starts_at);
CREATE TABLE queue_events (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         queue_id INTEGER NOT NULL REFERENCES queues(id),
         kind TEXT NOT NULL,
         ticket_hash TEXT NOT NULL,
         waited_secs INTEGER
     ) STRICT;
CREATE INDEX queue_events_by_time ON queue_events(at);
CREATE TABLE chat_messages (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         name TEXT NOT NULL,
         text TEXT NOT NULL,
         at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX chat_by_consultation ON chat_messages(consultation_id);
CREATE TABLE conference_requests (
         id INTEGER PRIMARY KEY,
         urgency TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergency')),
         from_facility_id INTEGER NOT NULL REFERENCES facilities(id),
         to_facility_id INTEGER NOT NULL REFERENCES facilities(id),
         specialty TEXT NOT NULL,
         patient_name TEXT NOT NULL,
         patient_birth_year INTEGER,
         patient_sex TEXT CHECK (patient_sex IN ('male', 'female', 'other')),
         summary TEXT NOT NULL,
         question TEXT NOT NULL,
         requested_by INTEGER NOT NULL REFERENCES staff(id),
         created_at INTEGER NOT NULL,
         consent_text_version TEXT NOT NULL,
         consent_remote_examination INTEGER NOT NULL CHECK (consent_remote_examination = 1),
         consent_third_parties INTEGER NOT NULL CHECK (consent_third_parties IN (0, 1)),
         consent_recording INTEGER NOT NULL CHECK (consent_recording IN (0, 1)),
         declined_at INTEGER,
         decline_reason TEXT,
         consultation_id TEXT UNIQUE REFERENCES consultations(id),
         starts_at INTEGER,
         duration_min INTEGER,
         chair_staff_id INTEGER REFERENCES staff(id),
         scheduled_by TEXT,
         secretary_staff_id INTEGER REFERENCES staff(id),
         conclusion TEXT,
         conclusion_by INTEGER REFERENCES staff(id),
         conclusion_at INTEGER
     , cancelled_at INTEGER, cancel_reason TEXT, patient_address TEXT, patient_record_number TEXT, patient_citizen_id TEXT
         CHECK (patient_citizen_id IS NULL OR (length(patient_citizen_id) = 12
                AND patient_citizen_id NOT GLOB '*[^0-9]*')), management_plan TEXT) STRICT;
CREATE TABLE conference_invitees (
         request_id INTEGER NOT NULL REFERENCES conference_requests(id),
         staff_id INTEGER NOT NULL REFERENCES staff(id),
         PRIMARY KEY (request_id, staff_id)
     ) STRICT;
CREATE INDEX invitees_by_staff ON conference_invitees(staff_id);
CREATE TABLE conference_attachments (
         id INTEGER PRIMARY KEY,
         request_id INTEGER NOT NULL REFERENCES conference_requests(id),
         name TEXT NOT NULL,
         content_type TEXT NOT NULL,
         size INTEGER NOT NULL,
         sha256 TEXT NOT NULL,
         data BLOB NOT NULL,
         uploaded_by TEXT NOT NULL,
         uploaded_at INTEGER NOT NULL
     ) STRICT;
CREATE INDEX attachments_by_request ON conference_attachments(request_id);
CREATE TABLE link_quality (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         from_at INTEGER NOT NULL,
         to_at INTEGER NOT NULL,
         samples INTEGER NOT NULL,
         rtt_ms_avg INTEGER,
         rtt_ms_max INTEGER,
         loss_pct_max REAL,
         jitter_ms_max INTEGER,
         frame_height_min INTEGER,
         covered_ms INTEGER NOT NULL,
         audio_only_ms INTEGER NOT NULL
     ) STRICT;
CREATE INDEX link_quality_by_consultation ON link_quality(consultation_id);
CREATE TABLE link_gaps (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         started_at INTEGER NOT NULL,
         ended_at INTEGER,
         outcome TEXT CHECK (outcome IN ('resumed', 'left'))
     ) STRICT;
CREATE INDEX link_gaps_by_consultation ON link_gaps(consultation_id);
CREATE TABLE audit_strangers (
         key TEXT PRIMARY KEY,
         action TEXT NOT NULL,
         consultation_id TEXT NOT NULL,
         actor TEXT NOT NULL,
         detail TEXT NOT NULL,
         first_at INTEGER NOT NULL,
         written INTEGER NOT NULL,
         repeated INTEGER NOT NULL,
         repeated_from INTEGER,
         repeated_to INTEGER
     ) STRICT;
CREATE TABLE room_bars (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         staff_id INTEGER,
         link_sha256 BLOB CHECK (link_sha256 IS NULL OR length(link_sha256) = 32),
         barred_at INTEGER NOT NULL,
         CHECK ((staff_id IS NULL) <> (link_sha256 IS NULL))
     ) STRICT;
CREATE INDEX room_bars_by_consultation ON room_bars(consultation_id);
CREATE TABLE visit_reasons (
         consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
         reason TEXT NOT NULL,
         at INTEGER NOT NULL
     ) STRICT;
