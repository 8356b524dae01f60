"""Lua scripts of the Redis backend: each mutation is one script, so it is atomic.

Every key a script touches shares the family's hash tag (``gw:{tokens}:...``), so
the script runs on one Redis Cluster node; ``KEYS[1]`` is always a key of that
family, which is what routes the call. Rows arrive as JSON objects of strings
(numbers as decimal strings: Lua numbers are doubles). Each script publishes its
change notifications itself, so a change and its announcement cannot be split.

Token family (``base`` = ``<prefix>:{tokens}``)::

    base:t:<hash>        HASH   the token's fields
    base:names           HASH   live token name -> hash
    base:name:<name>     SET    hashes of every token with that name
    base:owner:<owner>   SET    hashes of the owner's tokens
    base:all             ZSET   hash by created
    base:expiry          ZSET   hash by expires (tokens that expire)
    base:revoked         ZSET   hash by revoked_at
"""

from __future__ import annotations

_HELPERS = """
local function hset_row(key, row)
  local args = {}
  for field, value in pairs(row) do
    if value ~= cjson.null then
      args[#args + 1] = field
      args[#args + 1] = value
    end
  end
  redis.call('HSET', key, unpack(args))
end

local function is_live(row)
  return (row['revoked_at'] == nil or row['revoked_at'] == cjson.null)
     and (row['replaced_by'] == nil or row['replaced_by'] == cjson.null)
end

local function write_token(base, row)
  local h = row['token_hash']
  hset_row(base .. ':t:' .. h, row)
  redis.call('ZADD', base .. ':all', row['created'], h)
  redis.call('SADD', base .. ':owner:' .. row['owner'], h)
  redis.call('SADD', base .. ':name:' .. row['name'], h)
  if row['expires'] ~= nil and row['expires'] ~= cjson.null then
    redis.call('ZADD', base .. ':expiry', row['expires'], h)
  end
  if row['revoked_at'] ~= nil and row['revoked_at'] ~= cjson.null then
    redis.call('ZADD', base .. ':revoked', row['revoked_at'], h)
  end
  if is_live(row) then
    redis.call('HSET', base .. ':names', row['name'], h)
  end
end

local function revoke_token(base, h, at, reason)
  local key = base .. ':t:' .. h
  if redis.call('HEXISTS', key, 'revoked_at') == 1 then
    return 0
  end
  redis.call('HSET', key, 'revoked_at', at, 'revoked_reason', reason)
  redis.call('ZADD', base .. ':revoked', at, h)
  local name = redis.call('HGET', key, 'name')
  if name and redis.call('HGET', base .. ':names', name) == h then
    redis.call('HDEL', base .. ':names', name)
  end
  return 1
end

local function delete_token(base, h)
  local key = base .. ':t:' .. h
  local fields = redis.call('HMGET', key, 'name', 'owner')
  if not fields[1] then
    return 0
  end
  redis.call('DEL', key)
  redis.call('ZREM', base .. ':all', h)
  redis.call('ZREM', base .. ':expiry', h)
  redis.call('ZREM', base .. ':revoked', h)
  redis.call('SREM', base .. ':owner:' .. fields[2], h)
  redis.call('SREM', base .. ':name:' .. fields[1], h)
  if redis.call('HGET', base .. ':names', fields[1]) == h then
    redis.call('HDEL', base .. ':names', fields[1])
  end
  return 1
end

local function cut_expiry(current, grace)
  if current and current ~= cjson.null and tonumber(current) < tonumber(grace) then
    return current
  end
  return grace
end
"""

# KEYS[1] base:names; ARGV base, channel, "1" to announce each token ("0": one "all"), rows...
CREATE_TOKENS = (
    _HELPERS
    + """
local base, channel, each = ARGV[1], ARGV[2], ARGV[3] == '1'
local rows, hashes, names = {}, {}, {}
for i = 4, #ARGV do
  local row = cjson.decode(ARGV[i])
  local h = row['token_hash']
  if hashes[h] or redis.call('EXISTS', base .. ':t:' .. h) == 1 then
    return {'conflict', ''}
  end
  hashes[h] = true
  if is_live(row) then
    if names[row['name']] or redis.call('HEXISTS', base .. ':names', row['name']) == 1 then
      return {'duplicate', row['name']}
    end
    names[row['name']] = true
  end
  rows[#rows + 1] = row
end
for _, row in ipairs(rows) do
  write_token(base, row)
  if each then
    redis.call('PUBLISH', channel, 'token:' .. row['token_hash'])
  end
end
if not each and #rows > 0 then
  redis.call('PUBLISH', channel, 'all:')
end
return {'ok', ''}
"""
)

# KEYS[1] base:names; ARGV base, channel, new row, grace_until
ROTATE_TOKEN = (
    _HELPERS
    + """
local base, channel, grace = ARGV[1], ARGV[2], ARGV[4]
local row = cjson.decode(ARGV[3])
local old = redis.call('HGET', base .. ':names', row['name'])
if not old then
  return {'notfound', ''}
end
if redis.call('EXISTS', base .. ':t:' .. row['token_hash']) == 1 then
  return {'conflict', ''}
end
local old_key = base .. ':t:' .. old
local expires = cut_expiry(redis.call('HGET', old_key, 'expires'), grace)
redis.call('HSET', old_key, 'replaced_by', row['token_hash'], 'expires', expires)
redis.call('ZADD', base .. ':expiry', expires, old)
row['rotated_from'] = old
row['replaced_by'] = nil
write_token(base, row)
redis.call('PUBLISH', channel, 'token:' .. old)
redis.call('PUBLISH', channel, 'token:' .. row['token_hash'])
return {'ok', old}
"""
)

# KEYS[1] base:t:<hash>; ARGV base, channel, hash, at, reason
REVOKE_TOKEN = (
    _HELPERS
    + """
local base, channel, h = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
revoke_token(base, h, ARGV[4], ARGV[5])
redis.call('PUBLISH', channel, 'token:' .. h)
return 1
"""
)

# KEYS[1] base:all; ARGV base, channel, at, reason, owner ('' for every owner)
REVOKE_TOKENS = (
    _HELPERS
    + """
local base, channel, at, reason, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local hashes
if owner ~= '' then
  hashes = redis.call('SMEMBERS', base .. ':owner:' .. owner)
else
  hashes = redis.call('ZRANGE', base .. ':all', 0, -1)
end
local count = 0
for _, h in ipairs(hashes) do
  count = count + revoke_token(base, h, at, reason)
end
if count > 0 then
  redis.call('PUBLISH', channel, 'all:')
end
return count
"""
)

# KEYS[1] base:t:<hash>; ARGV base, channel, hash
DELETE_TOKEN = (
    _HELPERS
    + """
local deleted = delete_token(ARGV[1], ARGV[3])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[2], 'token:' .. ARGV[3])
end
return deleted
"""
)

# KEYS[1] base:expiry; ARGV base, before (exclusive)
DELETE_EXPIRED_TOKENS = (
    _HELPERS
    + """
local base, before = ARGV[1], '(' .. ARGV[2]
local doomed = {}
for _, h in ipairs(redis.call('ZRANGEBYSCORE', base .. ':expiry', '-inf', before)) do
  doomed[h] = true
end
for _, h in ipairs(redis.call('ZRANGEBYSCORE', base .. ':revoked', '-inf', before)) do
  doomed[h] = true
end
local count = 0
for h, _ in pairs(doomed) do
  count = count + delete_token(base, h)
end
return count
"""
)

# KEYS[1] any key of the family; ARGV base, infix (':t:' or ':k:'), then (hash, count, last_used) triples
RECORD_USAGE = """
local base, infix = ARGV[1], ARGV[2]
for i = 3, #ARGV, 3 do
  local key = base .. infix .. ARGV[i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'usage_count', ARGV[i + 1])
    local last = redis.call('HGET', key, 'last_used')
    if not last or tonumber(last) < tonumber(ARGV[i + 2]) then
      redis.call('HSET', key, 'last_used', ARGV[i + 2])
    end
  end
end
return 1
"""

# Service keys (base = <prefix>:{keys}): base:svc:<service> HASH key_id -> JSON row; base:services SET.
# KEYS[1] base:svc:<service>; ARGV base, channel, service_id, key_id, row JSON, 'add' | 'update'
PUT_SERVICE_KEY = """
local base, channel, service, key_id, row, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local exists = redis.call('HEXISTS', KEYS[1], key_id) == 1
if mode == 'add' and exists then
  return 'conflict'
end
if mode == 'update' and not exists then
  return 'notfound'
end
redis.call('HSET', KEYS[1], key_id, row)
redis.call('SADD', base .. ':services', service)
redis.call('PUBLISH', channel, 'service_key:' .. service .. '/' .. key_id)
return 'ok'
"""

# KEYS[1] base:svc:<service>; ARGV channel, service_id, old key id, new key id, new row JSON, grace_until
ROTATE_SERVICE_KEY = (
    _HELPERS
    + """
local channel, service, old_id, new_id, row, grace = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local old_json = redis.call('HGET', KEYS[1], old_id)
if not old_json then
  return {'notfound', ''}
end
if redis.call('HEXISTS', KEYS[1], new_id) == 1 then
  return {'conflict', ''}
end
local old = cjson.decode(old_json)
old['expires'] = cut_expiry(old['expires'], grace)
old_json = cjson.encode(old)
redis.call('HSET', KEYS[1], old_id, old_json, new_id, row)
redis.call('PUBLISH', channel, 'service_key:' .. service .. '/' .. old_id)
redis.call('PUBLISH', channel, 'service_key:' .. service .. '/' .. new_id)
return {'ok', old_json}
"""
)

# API clients (base = <prefix>:{clients}):
#   base:c:<client_id> HASH client fields    base:all ZSET client id by created   base:tenant:<t> SET ids
#   base:k:<key_hash>  HASH key fields       base:keys:<client_id> ZSET key hash by created
_CLIENT_HELPERS = (
    _HELPERS
    + """
local function write_key(base, row)
  hset_row(base .. ':k:' .. row['key_hash'], row)
  redis.call('ZADD', base .. ':keys:' .. row['client_id'], row['created'], row['key_hash'])
end
"""
)

# KEYS[1] base:all; ARGV base, channel, client row, key rows...
REGISTER_CLIENT = (
    _CLIENT_HELPERS
    + """
local base, channel = ARGV[1], ARGV[2]
local client = cjson.decode(ARGV[3])
local id = client['client_id']
if redis.call('EXISTS', base .. ':c:' .. id) == 1 then
  return 'conflict'
end
local keys, seen = {}, {}
for i = 4, #ARGV do
  local row = cjson.decode(ARGV[i])
  if row['client_id'] ~= id or seen[row['key_hash']] or redis.call('EXISTS', base .. ':k:' .. row['key_hash']) == 1 then
    return 'conflict'
  end
  seen[row['key_hash']] = true
  keys[#keys + 1] = row
end
hset_row(base .. ':c:' .. id, client)
redis.call('ZADD', base .. ':all', client['created'], id)
redis.call('SADD', base .. ':tenant:' .. client['tenant'], id)
for _, row in ipairs(keys) do
  write_key(base, row)
  redis.call('PUBLISH', channel, 'api_key:' .. row['key_hash'])
end
redis.call('PUBLISH', channel, 'api_client:' .. id)
return 'ok'
"""
)

# KEYS[1] base:all; ARGV base, channel, client row
UPDATE_CLIENT = (
    _CLIENT_HELPERS
    + """
local base, channel = ARGV[1], ARGV[2]
local client = cjson.decode(ARGV[3])
local key = base .. ':c:' .. client['client_id']
local tenant = redis.call('HGET', key, 'tenant')
if not tenant then
  return 'notfound'
end
redis.call('SREM', base .. ':tenant:' .. tenant, client['client_id'])
redis.call('SADD', base .. ':tenant:' .. client['tenant'], client['client_id'])
redis.call('DEL', key)
hset_row(key, client)
redis.call('ZADD', base .. ':all', client['created'], client['client_id'])
redis.call('PUBLISH', channel, 'api_client:' .. client['client_id'])
return 'ok'
"""
)

# KEYS[1] base:all; ARGV base, channel, key row
ADD_API_KEY = (
    _CLIENT_HELPERS
    + """
local base, channel = ARGV[1], ARGV[2]
local row = cjson.decode(ARGV[3])
if redis.call('EXISTS', base .. ':c:' .. row['client_id']) == 0 then
  return 'notfound'
end
if redis.call('EXISTS', base .. ':k:' .. row['key_hash']) == 1 then
  return 'conflict'
end
write_key(base, row)
redis.call('PUBLISH', channel, 'api_key:' .. row['key_hash'])
return 'ok'
"""
)

# KEYS[1] base:all; ARGV base, channel, old key hash, new key row, grace_until
ROTATE_API_KEY = (
    _CLIENT_HELPERS
    + """
local base, channel, old, grace = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local row = cjson.decode(ARGV[4])
local old_key = base .. ':k:' .. old
local fields = redis.call('HMGET', old_key, 'client_id', 'expires')
if not fields[1] then
  return 'notfound'
end
if fields[1] ~= row['client_id'] or redis.call('EXISTS', base .. ':k:' .. row['key_hash']) == 1 then
  return 'conflict'
end
redis.call('HSET', old_key, 'expires', cut_expiry(fields[2], grace))
row['rotated_from'] = old
write_key(base, row)
redis.call('PUBLISH', channel, 'api_key:' .. old)
redis.call('PUBLISH', channel, 'api_key:' .. row['key_hash'])
return 'ok'
"""
)

# KEYS[1] base:k:<hash>; ARGV channel, hash, at, reason
REVOKE_API_KEY = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 0 then
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[3], 'revoked_reason', ARGV[4])
end
redis.call('PUBLISH', ARGV[1], 'api_key:' .. ARGV[2])
return 1
"""

# KEYS[1] base:k:<hash>; ARGV base: the key's fields and its client's, in one round trip
GET_API_KEY = """
local key = redis.call('HGETALL', KEYS[1])
if #key == 0 then
  return {}
end
local client_id = redis.call('HGET', KEYS[1], 'client_id')
return {key, redis.call('HGETALL', ARGV[1] .. ':c:' .. client_id)}
"""

# A batch of the audit trail's decisions (gateway.store.decision_text) as one entry of the audit stream.
# KEYS[1] <prefix>:{audit}:events, KEYS[2] <prefix>:{audit}:batch_events; ARGV: the cap on entries, the
# batch's decision count, its first and last decision times (microseconds), its text. The second stream
# holds each batch's decision count under the batch's id: retention counts the decisions it trims from it
# without reading the batches.
APPEND_AUDIT_BATCH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
  'batch', ARGV[5], 'events', ARGV[2], 'first', ARGV[3], 'last', ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 'events', ARGV[2])
return id
"""
