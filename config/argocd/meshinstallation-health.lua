-- Argo CD health check for mesh.fleetmesh.io/MeshInstallation (fleetmesh config/argocd).
-- Argo CD runs it with only Lua's base, table and package libraries (no string library), with
-- the object as `obj`; it must return {status = ..., message = ...}.
local hs = {}

local function condition(conditions, t)
  for _, c in ipairs(conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator is uninstalling the control plane from every member"
  return hs
end

if obj.status == nil or obj.status.conditions == nil or #obj.status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the fleetmesh operator to report status"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation or 0
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation) .. " (status describes " .. tostring(observed) .. ")"
  return hs
end

local conditions = obj.status.conditions
local degraded = condition(conditions, "Degraded")
local ready = condition(conditions, "Ready")
local progressing = condition(conditions, "Progressing")

-- Unreachable members, a Cluster owned by an older installation, or a trust-domain template
-- that cannot work: all need a person.
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end

-- Not ready and nothing rolling out (NoClustersSelected): it stays so until someone acts.
if ready ~= nil and ready.status == "False" and progressing ~= nil and progressing.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
