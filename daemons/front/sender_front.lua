-- Sender's front tier with nginx (front.kind = "nginx"): LL-HLS playlists answered inside nginx.
--
-- sender-front pushes every version of each public or unlisted rendition's media playlist to
-- `push` (the loopback control listener): the full playlist, its delta update (_HLS_skip) when
-- it offers one, and the few numbers a blocking reload is decided on. A viewer's playlist request
-- is answered from that copy: at once when what it asks for is listed, else it waits on the
-- rendition's semaphore, which the next push posts — event-driven, no polling, no upstream
-- request per viewer. Anything this code is not sure about (no fresh copy, a private stream,
-- malformed or unusual directives, a wait that ran out) goes to sender-http (`@sender`), which
-- answers it as it would without a front. The rules mirror daemons/media/hls/model.py
-- (`contains`, `too_far_ahead`) and daemons/http/hls_route.py (headers, Cache-Control).
--
-- State is per nginx worker (the owned front runs one: daemons/core/front_nginx.py) and lost on
-- reload; the next push (a part later) fills it again, and requests meanwhile go to sender-http.

local semaphore = require "ngx.semaphore"

local M = {}

local renditions = {}  -- "<stream>/<generation>/<rendition>" -> entry (kept, updated in place)
-- What sender-http pulls once a second (`stats`), then cleared: requests and bytes by
-- (kind, status, handling), and the viewers seen (rendition, session id, address, user agent).
local counts = {}
local viewers = {}
-- Renditions viewers asked for (path -> last time), answered or not: sender-front pushes only
-- these (`wanted`), so a rendition nobody watches costs it nothing.
local wanted = {}

local ENDED_MAX_AGE = 3600
local LIVE_MAX_AGE = 1

local function entry_of(path)
  local e = renditions[path]
  if e == nil then
    e = {sema = semaphore.new(0), expires = 0}
    renditions[path] = e
  end
  return e
end

local function int_arg(args, name)
  local v = args[name]
  if v == nil then
    return nil, true
  end
  if type(v) ~= "string" or not v:match("^%d+$") or #v > 12 then
    return nil, false  -- repeated, empty or not a number: sender-http answers it (400)
  end
  return tonumber(v), true
end

-- RFC 8216bis 6.2.5.2, as MediaPlaylist.contains: can (msn, part) be answered now?
local function contains(e, msn, part)
  if e.ended or msn < e.media_sequence then
    return true
  end
  if part == nil then
    return msn < e.next_msn
  end
  if msn < e.next_msn - 1 then
    return true
  end
  if msn == e.next_msn - 1 then
    return part < e.last_parts or e.partial > 0
  end
  if msn == e.next_msn then
    return part < e.partial
  end
  return false
end

-- As MediaPlaylist.too_far_ahead: sender-http answers those (400).
local function too_far_ahead(e, msn, part)
  if e.ended then
    return false
  end
  if msn > e.next_msn + 1 then
    return true
  end
  if part == nil then
    return false
  end
  local ahead
  if msn < e.last_msn then
    return false
  elseif msn == e.last_msn then
    ahead = part - e.last_part
  else
    ahead = part + 1
  end
  return ahead > e.part_limit
end

local function to_sender()
  return ngx.exec("@sender")
end

function M.playlist()
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    return to_sender()
  end
  local path = ngx.var.sender_rendition
  wanted[path] = ngx.now()
  local e = renditions[path]
  if e == nil or e.expires < ngx.now() then
    return to_sender()
  end
  local args, err = ngx.req.get_uri_args(16)
  if err == "truncated" or args.token ~= nil then
    return to_sender()
  end
  local msn, ok_msn = int_arg(args, "_HLS_msn")
  local part, ok_part = int_arg(args, "_HLS_part")
  local skip = args._HLS_skip
  if not ok_msn or not ok_part or (part ~= nil and msn == nil) then
    return to_sender()
  end
  if skip ~= nil and skip ~= "YES" and skip ~= "v2" then
    return to_sender()
  end
  local blocking = msn ~= nil and not e.ended
  if blocking then
    if too_far_ahead(e, msn, part) then
      return to_sender()
    end
    if not contains(e, msn, part) then
      local deadline = ngx.now() + e.hold_s
      repeat
        local left = deadline - ngx.now()
        if left <= 0 then  -- as sender-http: 503 after 3 x TARGETDURATION
          ngx.status = 503
          ngx.header["Content-Type"] = "text/plain; charset=utf-8"
          ngx.header["Cache-Control"] = "no-store"
          ngx.header["Access-Control-Allow-Origin"] = "*"
          ngx.say("the requested segment or part did not arrive in time")
          return ngx.exit(ngx.HTTP_OK)  -- the 503 is sent: end the request
        end
        local ok, werr = e.sema:wait(left)
        if not ok and werr ~= "timeout" then
          ngx.log(ngx.ERR, "playlist hold: ", werr)
          return to_sender()
        end
        ngx.update_time()
        if e.expires < ngx.now() then
          return to_sender()  -- dropped (made private) while we waited
        end
      until contains(e, msn, part)
    end
  end
  local body = e.full
  if skip ~= nil and e.delta ~= nil then
    body = e.delta
  end
  local max_age = LIVE_MAX_AGE
  if e.ended then
    max_age = ENDED_MAX_AGE
  elseif blocking then
    max_age = e.hold_max_age
  end
  ngx.var.sender_handling = "hit"
  local session = args.session
  if type(session) == "table" then
    session = session[#session]  -- sender-http reads the last one
  end
  if type(session) ~= "string" or session == "" then
    session = ngx.var.http_x_playback_session_id or ""
  end
  local key = session .. "\t" .. ngx.var.remote_addr .. "\t" .. (ngx.var.http_user_agent or "")
  if key:find("[\t\r\n].*[\t\r\n].*[\t\r\n]") then  -- a tab or line break inside a value
    key = session:gsub("[\t\r\n]", " ") .. "\t" .. ngx.var.remote_addr .. "\t"
          .. (ngx.var.http_user_agent or ""):gsub("[\t\r\n]", " ")
  end
  viewers[ngx.var.sender_rendition .. "\t" .. key] = true
  ngx.header["Content-Type"] = "application/vnd.apple.mpegurl"
  ngx.header["Cache-Control"] = "public, max-age=" .. max_age
  ngx.header["Content-Length"] = #body
  ngx.header["Access-Control-Allow-Origin"] = "*"
  ngx.header["Access-Control-Expose-Headers"] = "content-length, content-range, etag, age"
  if method == "HEAD" then
    return ngx.exit(ngx.HTTP_OK)
  end
  ngx.print(body)
end

-- The control listener answers only sender-front and sender-http (the install's key).
local function authorized()
  local key = ngx.var.http_x_sender_key
  if key == nil or key ~= ngx.var.sender_push_key then
    ngx.exit(ngx.HTTP_FORBIDDEN)
    return false
  end
  return true
end

local NUMBERS = {"next_msn", "media_sequence", "last_parts", "partial", "last_msn", "last_part",
                 "part_limit", "hold_s", "hold_max_age", "ttl"}  -- daemons/front/pusher.py

-- POST /push?r=<rendition path>&full=<bytes of the full playlist>&<NUMBERS>&ended=0|1
-- body: the full playlist, then its delta update (if any).
function M.push()
  if not authorized() then
    return
  end
  ngx.req.read_body()
  local args = ngx.req.get_uri_args(32)
  local body = ngx.req.get_body_data()
  local path, full_len = args.r, tonumber(args.full)
  if type(path) ~= "string" or not path:match("^st_%x+/gen_%x+/[%w_-]+$") or body == nil or full_len == nil
      or full_len > #body then
    return ngx.exit(ngx.HTTP_BAD_REQUEST)
  end
  local values = {}
  for _, name in ipairs(NUMBERS) do
    values[name] = tonumber(args[name])
    if values[name] == nil then
      return ngx.exit(ngx.HTTP_BAD_REQUEST)
    end
  end
  local e = entry_of(path)
  for name, v in pairs(values) do
    e[name] = v
  end
  e.ended = args.ended == "1"
  e.full = body:sub(1, full_len)
  e.delta = nil
  if full_len < #body then
    e.delta = body:sub(full_len + 1)
  end
  e.expires = ngx.now() + values.ttl
  local waiting = -e.sema:count()
  if waiting > 0 then
    e.sema:post(waiting)
  end
  return M.text(waiting .. "\n")
end

-- What an HLS path is, as access_log.kind_of / hls_route.py name it.
local function kind_of(uri)
  if uri:sub(1, 5) ~= "/hls/" then
    return "other"
  end
  local name = uri:match("[^/]*$")
  if name:sub(-4) == ".m4s" then
    local _, dots = name:gsub("%.", "")
    if dots == 2 then
      return "part"
    end
    return "segment"
  elseif name == "index.m3u8" then
    return "playlist"
  elseif name == "master.m3u8" then
    return "master"
  elseif name:sub(-4) == ".mp4" then
    return "init"
  elseif name:sub(-3) == ".ts" then
    return "segment"
  end
  return "hls"
end

-- Log phase of every viewer request: its bytes and count, by kind, status and handling (nested
-- tables: no key string built per request).
local var = ngx.var

function M.log()
  local kind = var.sender_kind
  if kind == "" then
    kind = kind_of(var.uri)
  end
  local by_status = counts[kind]
  if by_status == nil then
    by_status = {}
    counts[kind] = by_status
  end
  local status = var.status
  local by_handling = by_status[status]
  if by_handling == nil then
    by_handling = {}
    by_status[status] = by_handling
  end
  local handling = var.sender_handling
  local c = by_handling[handling]
  if c == nil then
    c = {0, 0}
    by_handling[handling] = c
  end
  c[1] = c[1] + 1
  c[2] = c[2] + (tonumber(var.body_bytes_sent) or 0)
end

-- GET /stats: what was counted since the last pull, as lines ("c" kind status handling requests
-- bytes; "v" rendition session address user-agent: tabs and line breaks inside values were made
-- spaces), then cleared.
function M.stats()
  if not authorized() then
    return
  end
  local out = {}
  for kind, by_status in pairs(counts) do
    for status, by_handling in pairs(by_status) do
      for handling, c in pairs(by_handling) do
        out[#out + 1] = "c\t" .. kind .. "\t" .. status .. "\t" .. handling .. "\t" .. c[1] .. "\t" .. c[2]
      end
    end
  end
  for key in pairs(viewers) do
    out[#out + 1] = "v\t" .. key
  end
  counts = {}
  viewers = {}
  return M.text(table.concat(out, "\n") .. "\n")
end

-- GET /wanted?since=<seconds>: the renditions asked for within that long, one per line.
function M.wanted()
  if not authorized() then
    return
  end
  local since = tonumber(ngx.var.arg_since) or 60
  local now = ngx.now()
  local out = {}
  for path, t in pairs(wanted) do
    if now - t <= since then
      out[#out + 1] = path
    else
      wanted[path] = nil
    end
  end
  return M.text(table.concat(out, "\n") .. "\n")
end

-- The control listener's answers: text with a Content-Length (sender-front keeps the connection).
function M.text(body)
  ngx.header["Content-Type"] = "text/plain"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

-- POST /drop?s=<stream id>: the stream is no longer public (made private, deleted): forget it
-- now, and send whoever waits on it to sender-http.
function M.drop()
  if not authorized() then
    return
  end
  local stream = ngx.var.arg_s
  if type(stream) ~= "string" or not stream:match("^st_%x+$") then
    return ngx.exit(ngx.HTTP_BAD_REQUEST)
  end
  local dropped = 0
  local prefix = stream .. "/"
  for path, e in pairs(renditions) do
    if path:sub(1, #prefix) == prefix then
      e.expires = 0
      local waiting = -e.sema:count()
      if waiting > 0 then
        e.sema:post(waiting)
      end
      renditions[path] = nil
      dropped = dropped + 1
    end
  end
  return M.text(dropped .. "\n")
end

return M
