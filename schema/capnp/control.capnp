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
  }
}

struct Hello {
  pid @0 :UInt32;
  core @1 :UInt32;
  cores @2 :UInt32;
  versionHeld @3 :UInt64;
  # 0 when the core holds no snapshot.
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
  }
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
  # Log records waiting for storage (logging arrives with the log pipeline).
}
