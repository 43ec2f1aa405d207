// The agent's VM records on disk.
#include "node-agent/vm_record_store.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::agent {
namespace {

using ::testing::HasSubstr;

flotilla::v1::AgentVmRecord record(const std::string& name, uint32_t pid) {
  flotilla::v1::AgentVmRecord r;
  r.mutable_vm()->set_name(name);
  r.set_vmm_pid(pid);
  r.set_want_running(true);
  return r;
}

TEST(VmRecordStoreTest, SavesReplacesAndRemovesRecords) {
  ::flotilla::testing::TempDir dir;
  auto store = VmRecordStore::open(dir.file("state/vms"));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(store->save(record("a", 10)).ok());
  ASSERT_TRUE(store->save(record("b", 20)).ok());
  ASSERT_TRUE(store->save(record("a", 11)).ok());
  auto records = store->loadAll();
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  for (const auto& r : *records) {
    EXPECT_EQ(r.format_version(), VmRecordStore::kFormatVersion);
    EXPECT_EQ(r.vmm_pid(), r.vm().name() == "a" ? 11u : 20u);
  }
  ASSERT_TRUE(store->remove("a").ok());
  ASSERT_TRUE(store->remove("a").ok()) << "removing twice is fine";
  records = store->loadAll();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 1u);
}

TEST(VmRecordStoreTest, ACorruptRecordStopsTheLoadNamingTheFile) {
  ::flotilla::testing::TempDir dir;
  auto store = VmRecordStore::open(dir.path());
  ASSERT_TRUE(store.ok());
  std::ofstream(dir.file("x.pb")) << "\xff\xff\xff garbage";
  auto records = store->loadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_THAT(std::string(records.status().message()), HasSubstr(dir.file("x.pb")));
}

TEST(VmRecordStoreTest, AnInterruptedSaveIsIgnored) {
  ::flotilla::testing::TempDir dir;
  auto store = VmRecordStore::open(dir.path());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->save(record("a", 1)).ok());
  std::ofstream(dir.file("a.pb.tmp")) << "half";
  auto records = store->loadAll();
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1u);
}

TEST(VmRecordStoreTest, AnotherFormatVersionIsRefused) {
  ::flotilla::testing::TempDir dir;
  auto store = VmRecordStore::open(dir.path());
  ASSERT_TRUE(store.ok());
  flotilla::v1::AgentVmRecord future = record("a", 1);
  future.set_format_version(2);
  std::string bytes;
  future.SerializeToString(&bytes);
  std::ofstream(dir.file("a.pb")) << bytes;
  auto records = store->loadAll();
  ASSERT_FALSE(records.ok());
  EXPECT_THAT(std::string(records.status().message()), HasSubstr("format version 2"));
}

}  // namespace
}  // namespace flotilla::agent
