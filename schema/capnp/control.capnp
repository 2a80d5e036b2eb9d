# Palisade control protocol: controld <-> data-plane cores, and
# controld <-> operator CLI, over one Unix stream socket.
#
# Every message travels as a frame: a 4-byte little-endian length, then one
# Cap'n Proto message (standard stream framing) of exactly that many bytes.
# Receivers check the length against their maximum before allocating.
@0x800f30e2a5551f23;

# What a peer (data-plane core or operator CLI) sends to controld.
struct Request {
  union {
    hello @0 :Hello;
    # First message of a data-plane core connection.

    ack @1 :Ack;
    # A core's answer to a snapshot push.

    apply @2 :Apply;
    # Operator: compile, validate and push a policy.

    status @3 :Void;
    # Operator: report data planes, versions and the last push.

    rollback @4 :Rollback;
    # Operator: make an earlier snapshot current again and push it.

    logBatch @5 :LogBatch;
    # A core's batch of log records; controld answers with logAck once
    # the batch is durably stored.
  }
}

struct Hello {
  pid @0 :UInt32;
  core @1 :UInt32;
  cores @2 :UInt32;
  versionHeld @3 :UInt64;
  # 0 when the core holds no snapshot.
  logDropped @4 :UInt64;
  # Log records this core dropped since it started (memory and disk
  # budgets both exhausted).
}

struct LogBatch {
  streamId @0 :UInt64;
  # Identifies one core's run (start time and core); with seq it makes a
  # batch unique, so a batch resent after a lost ack is stored once.
  seq @1 :UInt64;
  # 1, 2, 3… within the stream; batches arrive in order.
  core @2 :UInt32;
  count @3 :UInt32;
  records @4 :Data;
  # `count` fixed-size records (layout: schema crate, logrec.rs).
  arena @5 :Data;
  # The strings the records point into.
  droppedTotal @6 :UInt64;
  # Records this core dropped since it started.
  endsStream @7 :Bool;
  # A stream's last word, sent by the core's next run (count 0, seq one
  # past the stream's last batch): the stream made `issuedTotal` records
  # and dropped `droppedTotal`; whatever of them is not stored was lost
  # with the process that held them in memory (killed or crashed).
  issuedTotal @8 :UInt64;
}

struct Ack {
  version @0 :UInt64;
  ok @1 :Bool;
  error @2 :Text;
  # Why the snapshot was refused (empty when ok).
}

struct Apply {
  policyPath @0 :Text;
  # Absolute path of the policy source; controld reads and compiles it
  # (relative paths inside it resolve against its directory).
}

struct Rollback {
  version @0 :UInt64;
  # 0: the version before the current one.
}

# What controld sends.
struct Response {
  union {
    snapshot @0 :SnapshotPush;
    # To a data-plane core: swap to this snapshot and ack.

    applied @1 :Applied;
    # To the CLI: outcome of apply or rollback.

    status @2 :Status;

    error @3 :Text;
    # To the CLI: the command failed (policy errors carry file:line:col).

    logAck @4 :LogAck;
    # To a core: this batch is stored (or refused as malformed); free it.
  }
}

struct LogAck {
  streamId @0 :UInt64;
  seq @1 :UInt64;
  ok @2 :Bool;
  error @3 :Text;
  # Why the batch was refused (malformed); the core drops it and counts it.
}

struct SnapshotPush {
  version @0 :UInt64;
  bytes @1 :Data;
  # A snapshot file's bytes (magic + policy.capnp Snapshot).
}

struct CoreAck {
  pid @0 :UInt32;
  core @1 :UInt32;
  ok @2 :Bool;
  error @3 :Text;
  # "no answer" when the core did not ack in time.
}

struct Applied {
  version @0 :UInt64;
  acks @1 :List(CoreAck);
  compileMicros @2 :UInt64;
  # Time controld spent reading, compiling and storing the policy.
  pushMicros @3 :UInt64;
  # From the first push byte sent to the last core's ack.
}

struct CoreStatus {
  pid @0 :UInt32;
  core @1 :UInt32;
  version @2 :UInt64;
  lastError @3 :Text;
  connectedForMs @4 :UInt64;
  logDropped @5 :UInt64;
  # Records the core dropped (both budgets exhausted) since it started.
  logStored @6 :UInt64;
  # Records from this core stored since it connected.
}

struct Status {
  currentVersion @0 :UInt64;
  historyVersions @1 :List(UInt64);
  cores @2 :List(CoreStatus);
  lastPushVersion @3 :UInt64;
  lastPushUnixMs @4 :Int64;
  lastPushResult @5 :Text;
  # "ok", or which cores refused and why.
  logBacklog @6 :UInt64;
  # Log records received and waiting for storage.
  logStored @7 :UInt64;
  # Log records stored since controld started.
  alertsPending @8 :UInt64;
  # Alerts waiting for delivery to the webhook.
  logLost @9 :UInt64;
  # Log records data-plane runs made and never delivered because the
  # process was killed or crashed holding them in memory (counted from
  # each ended stream's ledger, stored).
  alertsRaised @10 :UInt64;
  # Alerts raised and stored since controld started.
  alertsDelivered @11 :UInt64;
  # Alerts every configured sink (file, webhook) took.
  alertsFailed @12 :UInt64;
  # Alerts a sink did not take (write failed, webhook refused through
  # every retry, queue full); they stay in the store.
  siem @13 :List(ExportStatus);
  # Each SIEM export destination (controld serve --siem).
  logSink @14 :List(ExportStatus);
  # The ClickHouse log sink (controld serve --log-sink), when set.
}

struct ExportStatus {
  # How far an export from the log store has got.
  destination @0 :Text;
  # The URL given, e.g. syslog+tls://siem.example:6514.
  sent @1 :UInt64;
  # Records and alerts the receiver acknowledged since start.
  failures @2 :UInt64;
  # Failed connect or send attempts since start.
  lastError @3 :Text;
  # Why the last attempt failed; empty while delivering.
  markRecord @4 :Int64;
  markAlert @5 :Int64;
  # The last record and alert ids acknowledged (the persisted mark).
}
