// Strings of the tuxa web client: Vietnamese (default) and English.
//
// No DOM use at import time, so Node can load it (the tests check that every
// protocol error code has a translation in both languages).

export const LANGS = Object.freeze(['vi', 'en']);
export const DEFAULT_LANG = 'vi';
const STORAGE_KEY = 'tuxa.lang';

export const STRINGS = {
  vi: {
    app_name: 'tuxa — Khám bệnh từ xa',
    app_short: 'Khám bệnh từ xa',
    lang_switch: 'English',
    lang_switch_label: 'Chuyển sang tiếng Anh',
    checking_link: 'Đang kiểm tra đường dẫn…',
    preview_title: 'Kiểm tra camera và micro',
    preview_hint: 'Hãy kiểm tra hình ảnh của bạn trước khi vào phòng khám.',
    you_join_as: 'Bạn sẽ vào phòng với tư cách',
    field_name: 'Họ tên',
    field_role: 'Vai trò',
    field_facility: 'Cơ sở y tế',
    field_room: 'Buổi khám',
    link_valid_until: 'Đường dẫn có hiệu lực đến',
    camera: 'Camera',
    microphone: 'Micro',
    no_device: 'Không có',
    device_default: 'Mặc định',
    media_unavailable: 'Không truy cập được camera hoặc micro. Bạn vẫn có thể vào phòng để xem và nghe. Hãy kiểm tra quyền truy cập camera/micro của trình duyệt.',
    join_button: 'Vào phòng khám',
    connecting: 'Đang kết nối…',
    waiting_others: 'Đang chờ người khác vào phòng…',
    you: 'Bạn',
    mute_mic: 'Tắt micro',
    unmute_mic: 'Bật micro',
    camera_off: 'Tắt camera',
    camera_on: 'Bật camera',
    leave: 'Rời phòng',
    switch_camera: 'Đổi camera',
    mic_muted: 'Đã tắt micro',
    cam_muted: 'Đã tắt camera',
    no_camera: 'Không có camera',
    enable_sound: 'Bấm để bật âm thanh',
    left_title: 'Bạn đã rời phòng khám',
    left_body: 'Cảm ơn bạn. Bạn có thể đóng trang này.',
    rejoin: 'Vào lại',
    error_title: 'Không thể vào phòng khám',
    retry: 'Thử lại',
    reconnecting_media: 'Kết nối hình ảnh không ổn định…',
    participants_count: 'người trong phòng',
    unknown_participant: 'Người tham gia',
    // The patient's consent, one answer per purpose (never pre-ticked).
    consent_title: 'Sự đồng ý của bạn',
    consent_intro: 'Trước khi vào phòng khám, hãy cho biết bạn đồng ý với những điều nào dưới đây.',
    consent_exam: 'Tôi đồng ý được bác sĩ khám bệnh từ xa qua video. (Cần thiết để vào phòng khám.)',
    consent_third: 'Tôi đồng ý để người khác (ví dụ bác sĩ khác, điều dưỡng, phiên dịch) cùng có mặt trong buổi khám.',
    consent_recording: 'Tôi đồng ý cho ghi lại buổi khám.',
    consent_note: 'Không đồng ý với hai mục cuối không ảnh hưởng đến việc khám chữa bệnh của bạn.',
    consent_needed: 'Hãy đánh dấu ô đồng ý khám bệnh từ xa để vào phòng khám.',
    // Waiting to be admitted (patients and guests).
    waiting_title: 'Vui lòng chờ, bác sĩ sẽ mời bạn vào phòng',
    waiting_hint: 'Bạn không cần làm gì thêm. Hãy giữ trang này mở; cuộc gọi sẽ tự bắt đầu khi bác sĩ cho bạn vào.',
    waiting_as: 'Bạn đang chờ với tư cách',
    // The lobby panel (doctors).
    lobby_title: 'Đang chờ vào phòng',
    admit: 'Cho vào',
    refuse: 'Từ chối',
    lobby_arrived: 'đang chờ vào phòng',
  },
  en: {
    app_name: 'tuxa — Remote consultation',
    app_short: 'Remote consultation',
    lang_switch: 'Tiếng Việt',
    lang_switch_label: 'Switch to Vietnamese',
    checking_link: 'Checking your link…',
    preview_title: 'Check your camera and microphone',
    preview_hint: 'Check how you look and sound before you join.',
    you_join_as: 'You will join as',
    field_name: 'Name',
    field_role: 'Role',
    field_facility: 'Facility',
    field_room: 'Consultation',
    link_valid_until: 'Link valid until',
    camera: 'Camera',
    microphone: 'Microphone',
    no_device: 'None',
    device_default: 'Default',
    media_unavailable: 'The camera or microphone cannot be used. You can still join to watch and listen. Check the browser\'s camera/microphone permissions.',
    join_button: 'Join the consultation',
    connecting: 'Connecting…',
    waiting_others: 'Waiting for others to join…',
    you: 'You',
    mute_mic: 'Mute microphone',
    unmute_mic: 'Unmute microphone',
    camera_off: 'Turn camera off',
    camera_on: 'Turn camera on',
    leave: 'Leave',
    switch_camera: 'Switch camera',
    mic_muted: 'Microphone off',
    cam_muted: 'Camera off',
    no_camera: 'No camera',
    enable_sound: 'Tap to turn on sound',
    left_title: 'You left the consultation',
    left_body: 'Thank you. You can close this page.',
    rejoin: 'Join again',
    error_title: 'Cannot join the consultation',
    retry: 'Try again',
    reconnecting_media: 'The video connection is unstable…',
    participants_count: 'in the room',
    unknown_participant: 'Participant',
    consent_title: 'Your consent',
    consent_intro: 'Before you join, tell us which of the following you agree to.',
    consent_exam: 'I agree to be examined remotely by the doctor over video. (Needed to join.)',
    consent_third: 'I agree that other people (e.g. other doctors, nurses, interpreters) may also be present.',
    consent_recording: 'I agree that the consultation may be recorded.',
    consent_note: 'Saying no to the last two does not affect your care.',
    consent_needed: 'Tick the box agreeing to a remote examination to join.',
    waiting_title: 'Please wait — the doctor will let you in',
    waiting_hint: 'There is nothing else you need to do. Keep this page open; the call starts by itself when the doctor lets you in.',
    waiting_as: 'You are waiting as',
    lobby_title: 'Waiting to join',
    admit: 'Admit',
    refuse: 'Refuse',
    lobby_arrived: 'is waiting to join',
  },
};

export const ROLE_NAMES = {
  vi: { patient: 'Bệnh nhân', doctor: 'Bác sĩ', nurse: 'Điều dưỡng', guest: 'Khách mời' },
  en: { patient: 'Patient', doctor: 'Doctor', nurse: 'Nurse', guest: 'Guest' },
};

// Every protocol / API error code (protocol/src/error.rs), plus the client's
// own codes for what happens before or outside the server's answers.
export const ERROR_TEXTS = {
  vi: {
    bad_json: 'Lỗi giao tiếp với máy chủ: dữ liệu không hợp lệ.',
    unknown_message: 'Lỗi giao tiếp với máy chủ: loại tin nhắn không được hỗ trợ.',
    invalid_message: 'Lỗi giao tiếp với máy chủ: tin nhắn sai định dạng.',
    message_too_large: 'Lỗi giao tiếp với máy chủ: tin nhắn quá lớn.',
    unsupported_version: 'Phiên bản ứng dụng không tương thích với máy chủ. Hãy tải lại trang.',
    hello_required: 'Lỗi giao tiếp với máy chủ: phiên chưa được khởi tạo.',
    already_negotiated: 'Lỗi giao tiếp với máy chủ: phiên đã được khởi tạo.',
    not_joined: 'Bạn chưa vào phòng khám.',
    already_joined: 'Bạn đã ở trong phòng khám rồi.',
    token_malformed: 'Đường dẫn không đúng. Hãy mở lại chính xác đường dẫn bạn đã nhận được.',
    token_invalid: 'Đường dẫn không hợp lệ hoặc đã bị sửa đổi.',
    token_expired: 'Đường dẫn đã hết hạn. Hãy liên hệ cơ sở y tế để nhận đường dẫn mới.',
    token_wrong_room: 'Đường dẫn này dành cho một buổi khám khác.',
    token_not_yet_valid: 'Chưa đến giờ hẹn. Đường dẫn này chỉ dùng được từ ít phút trước giờ hẹn; hãy quay lại sau.',
    room_not_found: 'Không tìm thấy buổi khám này.',
    room_ended: 'Buổi khám đã kết thúc.',
    room_full: 'Phòng khám đã đủ người.',
    sdp_invalid: 'Máy chủ không chấp nhận cấu hình âm thanh và hình ảnh của thiết bị này.',
    negotiation_glare: 'Đang thiết lập lại kết nối hình ảnh…',
    no_pending_offer: 'Lỗi đồng bộ kết nối hình ảnh.',
    idle_timeout: 'Mất liên lạc quá lâu nên phiên đã bị đóng. Hãy tải lại trang để vào lại.',
    replaced: 'Bạn đã vào phòng khám từ một thiết bị hoặc cửa sổ khác.',
    forbidden: 'Bạn không có quyền thực hiện thao tác này.',
    not_waiting: 'Người này không còn chờ vào phòng.',
    refused: 'Bác sĩ chưa cho bạn vào phòng.',
    consent_required: 'Cần có sự đồng ý của bệnh nhân về việc khám bệnh từ xa trước khi vào phòng.',
    login_failed: 'Tên đăng nhập, mật khẩu hoặc mã xác thực không đúng.',
    too_many_attempts: 'Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau ít phút.',
    conflict: 'Tên hoặc số này đã được dùng.',
    queue_refused: 'Không vào được hàng chờ khám. Vui lòng thử lại sau.',
    not_on_call: 'Bạn không có trong lịch trực của hàng chờ này.',
    unauthorized: 'Không có quyền truy cập.',
    bad_request: 'Yêu cầu không hợp lệ. Hãy kiểm tra lại đường dẫn.',
    not_found: 'Không tìm thấy.',
    server_shutdown: 'Máy chủ đang tạm dừng. Vui lòng thử lại sau ít phút.',
    internal: 'Máy chủ gặp lỗi. Vui lòng thử lại sau.',
    // Client-side codes.
    no_token: 'Đường dẫn thiếu mã truy cập. Hãy mở chính xác đường dẫn đã được gửi cho bạn.',
    bad_link: 'Đường dẫn không đúng. Hãy mở chính xác đường dẫn đã được gửi cho bạn.',
    network_error: 'Không kết nối được tới máy chủ. Hãy kiểm tra mạng rồi thử lại.',
    connection_lost: 'Mất kết nối tới máy chủ.',
    media_failed: 'Không thiết lập được kết nối âm thanh và hình ảnh.',
    unknown_error: 'Đã xảy ra lỗi không xác định.',
  },
  en: {
    bad_json: 'Communication error with the server: invalid data.',
    unknown_message: 'Communication error with the server: unsupported message type.',
    invalid_message: 'Communication error with the server: malformed message.',
    message_too_large: 'Communication error with the server: message too large.',
    unsupported_version: 'This version of the app does not work with the server. Please reload the page.',
    hello_required: 'Communication error with the server: the session was not opened.',
    already_negotiated: 'Communication error with the server: the session is already open.',
    not_joined: 'You have not joined the consultation.',
    already_joined: 'You are already in the consultation.',
    token_malformed: 'This link is not right. Please open exactly the link you received.',
    token_invalid: 'This link is not valid or has been altered.',
    token_expired: 'This link has expired. Please contact the health facility for a new one.',
    token_wrong_room: 'This link is for a different consultation.',
    token_not_yet_valid: 'It is not time for your appointment yet. This link opens a few minutes before it; please come back then.',
    room_not_found: 'This consultation could not be found.',
    room_ended: 'The consultation has ended.',
    room_full: 'The consultation is full.',
    sdp_invalid: 'The server did not accept this device\'s audio and video settings.',
    negotiation_glare: 'Re-establishing the video connection…',
    no_pending_offer: 'The video connection got out of step.',
    idle_timeout: 'The connection was silent for too long and the session was closed. Reload the page to join again.',
    replaced: 'You joined the consultation from another device or window.',
    forbidden: 'You are not allowed to do this.',
    not_waiting: 'This person is no longer waiting.',
    refused: 'The doctor did not let you in.',
    consent_required: 'The patient\'s consent to a remote examination is needed before joining.',
    login_failed: 'The username, password or code is not right.',
    too_many_attempts: 'Too many failed sign-ins. Please try again in a few minutes.',
    conflict: 'This name or number is already taken.',
    queue_refused: 'The waiting line could not take you. Please try again later.',
    not_on_call: 'You are not on call for this queue.',
    unauthorized: 'Not authorised.',
    bad_request: 'The request was not valid. Please check the link.',
    not_found: 'Not found.',
    server_shutdown: 'The server is stopping. Please try again in a few minutes.',
    internal: 'The server had a problem. Please try again later.',
    no_token: 'The link is missing its access code. Please open exactly the link you were sent.',
    bad_link: 'This link is not right. Please open exactly the link you were sent.',
    network_error: 'Cannot reach the server. Please check your network and try again.',
    connection_lost: 'The connection to the server was lost.',
    media_failed: 'The audio and video connection could not be set up.',
    unknown_error: 'Something went wrong.',
  },
};

function storage() {
  try {
    return typeof globalThis.localStorage !== 'undefined' ? globalThis.localStorage : null;
  } catch {
    return null; // e.g. storage disabled
  }
}

function initialLang() {
  const s = storage();
  let stored = null;
  try { stored = s && s.getItem(STORAGE_KEY); } catch { /* ignore */ }
  return LANGS.includes(stored) ? stored : DEFAULT_LANG;
}

let current = initialLang();
const listeners = new Set();

export function getLang() {
  return current;
}

/** Switches language, remembers it, and tells the listeners. */
export function setLang(lang) {
  if (!LANGS.includes(lang)) return;
  current = lang;
  const s = storage();
  try { if (s) s.setItem(STORAGE_KEY, lang); } catch { /* ignore */ }
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** A UI string in the current (or the given) language. */
export function t(key, lang = current) {
  return STRINGS[lang]?.[key] ?? STRINGS[DEFAULT_LANG][key] ?? key;
}

/** The translated explanation of an error code. */
export function errorText(code, lang = current) {
  return ERROR_TEXTS[lang]?.[code] ?? ERROR_TEXTS[lang]?.unknown_error ?? String(code);
}

export function roleName(role, lang = current) {
  return ROLE_NAMES[lang]?.[role] ?? role;
}

/** BCP 47 locale for dates in the current language. */
export function locale(lang = current) {
  return lang === 'vi' ? 'vi-VN' : 'en-GB';
}
