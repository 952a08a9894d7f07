-- Before the switch the Cutover ends with traffic untouched; after it, it rolls back.
if obj.spec == nil then obj.spec = {} end
obj.spec.abort = true
return obj
