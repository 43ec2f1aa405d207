# Copied to the root of the derived etcd .proto tree by proto/CMakeLists.txt. Each etcd file
# is copied from FLOTILLA_ETCD_PROTO_DIR to etcd/<path> (etcd's own import paths start with
# "etcd/"), stripped of Go-only options, and compiled with its gRPC stubs.
set(derived_protos)
foreach(proto ${FLOTILLA_ETCD_PROTOS})
  set(src ${FLOTILLA_ETCD_PROTO_DIR}/${proto})
  set(dst ${CMAKE_CURRENT_SOURCE_DIR}/etcd/${proto})
  add_custom_command(
    OUTPUT ${dst}
    COMMAND ${CMAKE_COMMAND} -E copy ${src} ${dst}
    COMMAND sed -i -f ${FLOTILLA_ETCD_STRIP_SCRIPT} ${dst}
    DEPENDS ${src} ${FLOTILLA_ETCD_STRIP_SCRIPT}
    COMMENT "Deriving etcd/${proto} from ${src}"
    VERBATIM)
  list(APPEND derived_protos ${dst})
endforeach()
flotilla_proto_library(flotilla_etcd_proto PROTOS ${derived_protos})
