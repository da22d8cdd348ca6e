"""The Lua scripts the Redis sink and lease run (atomic on the Redis server)."""

from __future__ import annotations

__all__ = ["APPEND", "RENEW", "RELEASE"]

# Append a batch of events, each with the id the bridge gave it.
# KEYS[1] = stream, KEYS[2] = lease key ("" without a lease)
# ARGV[1] = lease token, ARGV[2] = MAXLEN (0: no trimming),
# ARGV[3] = the ids, comma-separated; ARGV[4] = the events' byte lengths, comma-separated;
# ARGV[5] = the last id of the batch sent just before this one and not answered yet ("" if
# none); ARGV[6] = the events, concatenated (six arguments per batch: cheap to send and parse);
# an event's final newline (a JSON line's) is not stored.
# Fencing: nothing is written unless the caller still holds the lease, so two bridges never
# write at once. Order: nothing is written if the stream has not reached ARGV[5] (the batch
# before failed, e.g. NOSCRIPT, and this one would make Redis skip it when it is re-sent):
# the error GAP says so. Idempotence: an id at or below the stream's last one was already
# written (a batch re-sent after a lost reply), so it is skipped, never written twice.
# Returns {written, skipped, repeated}: repeated counts the skipped ids the stream holds
# (a re-sent batch's); the others were below another writer's newer entries.
APPEND = """
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('LEASE the lease is held by another bridge')
end
local top_ms, top_seq = -1, -1
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local ms, seq = string.match(last[1][1], '^(%d+)-(%d+)$')
  top_ms, top_seq = tonumber(ms), tonumber(seq)
end
local after = ARGV[5]
if after ~= '' then
  local ams, aseq = string.match(after, '^(%d+)-(%d+)$')
  ams, aseq = tonumber(ams), tonumber(aseq)
  if top_ms < ams or (top_ms == ams and top_seq < aseq) then
    return redis.error_reply('GAP the batch before this one was not written')
  end
end
local maxlen = tonumber(ARGV[2])
local data = ARGV[6]
local lengths = string.gmatch(ARGV[4], '%d+')
local pos = 1
local written, skipped, repeated = 0, 0, 0
for id, ms, seq in string.gmatch(ARGV[3], '((%d+)-(%d+))') do
  local size = tonumber(lengths())
  local last = pos + size - 1
  if size > 0 and string.byte(data, last) == 10 then
    last = last - 1
  end
  local event = string.sub(data, pos, last)
  pos = pos + size
  ms, seq = tonumber(ms), tonumber(seq)
  if ms > top_ms or (ms == top_ms and seq > top_seq) then
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, id, 'event', event)
    else
      redis.call('XADD', KEYS[1], id, 'event', event)
    end
    top_ms, top_seq = ms, seq
    written = written + 1
  elseif redis.call('XRANGE', KEYS[1], id, id)[1] then
    repeated = repeated + 1
  else
    skipped = skipped + 1
  end
end
return {written, skipped, repeated}
"""

# Extend the lease if we still hold it. KEYS[1] = lease key; ARGV = token, ttl ms.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Give the lease up if we still hold it (a clean stop: the standby need not wait).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
