-- bench/cluster/ledger.sh: a handler that reads each message and sends nothing, so the run
-- measures the inbound path (ledger, claim, dispatch) and not the outbox.
local seen = 0
return {
  on_message = function(msg)
    seen = seen + #msg.text
  end,
}
