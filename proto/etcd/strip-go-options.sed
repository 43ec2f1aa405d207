# Turns etcd's .proto files (Debian golang-etcd-server-dev) into plain proto3 that protoc
# compiles without gogoproto or google.api: it removes only options that steer Go code
# generation and the HTTP gateway. Package names, messages, fields and numbers are
# untouched, so the wire format and the gRPC method paths stay exactly etcd's.
/^import "gogoproto\/gogo\.proto";/d
/^import "google\/api\/annotations\.proto";/d
/^option (gogoproto\./d
/option (google\.api\.http) = {/,/^ *};/d
s/ *\[(gogoproto\.[^]]*\]//g
