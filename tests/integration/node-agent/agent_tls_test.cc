// AgentService over TCP with TLS from a cluster CA: a client with a certificate the CA signed
// is served; a client without one, or with one from another CA, is refused.
#include <string>
#include <vector>

#include "common/command.h"
#include "common/files.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/node-agent/agent_host.h"
#include "tests/support/etcd_cluster.h"

namespace flotilla::agent {
namespace {

using ::flotilla::agent::testing::AgentHost;
using ::flotilla::agent::testing::ClusterNetwork;
using ::flotilla::testing::EtcdCluster;
using ::flotilla::testing::TempDir;

// A CA, and certificates it signs, made with the openssl command (EC P-256, one day).
class TestPki {
 public:
  absl::Status makeCa(const std::string& name) {
    return openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", file(name + ".key"), "-out", file(name + ".pem"), "-days",
                    "1", "-subj", "/CN=" + name});
  }
  // NAME.pem and NAME.key signed by CA, with subjectAltName `san` (e.g. "IP:10.0.0.1").
  absl::Status makeCert(const std::string& ca, const std::string& name, const std::string& san) {
    RETURN_IF_ERROR(openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                             "-nodes", "-keyout", file(name + ".key"), "-out", file(name + ".csr"),
                             "-subj", "/CN=" + name}));
    RETURN_IF_ERROR(writeFileAtomically(file(name + ".ext"), "subjectAltName=" + san + "\n"));
    return openssl({"x509", "-req", "-in", file(name + ".csr"), "-CA", file(ca + ".pem"), "-CAkey",
                    file(ca + ".key"), "-CAcreateserial", "-out", file(name + ".pem"), "-days", "1",
                    "-extfile", file(name + ".ext")});
  }
  std::string file(const std::string& name) const { return dir_.file(name); }
  std::string read(const std::string& name) const {
    auto text = readFileToString(file(name));
    return text.ok() ? *text : "";
  }

 private:
  absl::Status openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    SystemCommandRunner runner;
    return runChecked(runner, args).status();
  }
  TempDir dir_;
};

grpc::Status getHost(const std::string& address, const grpc::SslCredentialsOptions& tls) {
  auto stub =
      flotilla::v1::AgentService::NewStub(grpc::CreateChannel(address, grpc::SslCredentials(tls)));
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(10)));
  flotilla::v1::HostStatus status;
  return stub->GetHost(&context, flotilla::v1::GetHostRequest(), &status);
}

TEST(AgentTlsTest, ServesClientsWithACertificateFromTheClusterCaOnly) {
  auto network = ClusterNetwork::create();
  ASSERT_TRUE(network.ok()) << network.status();
  TestPki pki;
  const std::string address = (*network)->hostAddress(0);
  ASSERT_TRUE(pki.makeCa("ca").ok());
  ASSERT_TRUE(pki.makeCa("other-ca").ok());
  ASSERT_TRUE(pki.makeCert("ca", "host-a", "IP:" + address).ok());
  ASSERT_TRUE(pki.makeCert("ca", "controller", "DNS:controller").ok());
  ASSERT_TRUE(pki.makeCert("other-ca", "stranger", "DNS:stranger").ok());
  auto etcd = EtcdCluster::start(1, (*network)->gateway());
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  auto host = AgentHost::create(**network, {.index = 0,
                                            .etcd_endpoint = (*etcd)->clientEndpoint(0),
                                            .tls_ca = pki.file("ca.pem"),
                                            .tls_cert = pki.file("host-a.pem"),
                                            .tls_key = pki.file("host-a.key")});
  ASSERT_TRUE(host.ok()) << host.status();
  absl::Status started = (*host)->startAgent();
  ASSERT_TRUE(started.ok()) << started;
  const std::string target = address + ":7100";

  grpc::SslCredentialsOptions controller;
  controller.pem_root_certs = pki.read("ca.pem");
  controller.pem_cert_chain = pki.read("controller.pem");
  controller.pem_private_key = pki.read("controller.key");
  grpc::Status served = getHost(target, controller);
  EXPECT_TRUE(served.ok()) << served.error_message() << (*host)->agentLog();

  grpc::SslCredentialsOptions anonymous;
  anonymous.pem_root_certs = pki.read("ca.pem");
  EXPECT_FALSE(getHost(target, anonymous).ok()) << "served a client without a certificate";

  grpc::SslCredentialsOptions stranger;
  stranger.pem_root_certs = pki.read("ca.pem");
  stranger.pem_cert_chain = pki.read("stranger.pem");
  stranger.pem_private_key = pki.read("stranger.key");
  EXPECT_FALSE(getHost(target, stranger).ok()) << "served a client of another CA";

  auto plaintext = flotilla::v1::AgentService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(5)));
  flotilla::v1::HostStatus status;
  EXPECT_FALSE(plaintext->GetHost(&context, flotilla::v1::GetHostRequest(), &status).ok());
}

}  // namespace
}  // namespace flotilla::agent
