// Tests of UniqueFd ownership and pipes.
#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace flotilla {
namespace {

bool isOpen(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

TEST(UniqueFdTest, ClosesOnDestructionAndReset) {
  int raw = -1;
  {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    raw = fd.get();
    EXPECT_TRUE(isOpen(raw));
  }
  EXPECT_FALSE(isOpen(raw));

  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  raw = fd.get();
  fd.reset();
  EXPECT_FALSE(fd.valid());
  EXPECT_FALSE(isOpen(raw));
}

TEST(UniqueFdTest, MoveAndReleaseTransferOwnership) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = a.get();
  UniqueFd b = std::move(a);
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  int released = c.release();
  EXPECT_FALSE(c.valid());
  EXPECT_TRUE(isOpen(released));
  ::close(released);
}

TEST(UniqueFdTest, DuplicateIsAnIndependentCloseOnExecDescriptor) {
  UniqueFd fd(::open("/dev/null", O_RDONLY));
  auto copy = fd.duplicate();
  ASSERT_TRUE(copy.ok());
  EXPECT_NE(copy->get(), fd.get());
  EXPECT_TRUE(::fcntl(copy->get(), F_GETFD) & FD_CLOEXEC);
  fd.reset();
  EXPECT_TRUE(isOpen(copy->get()));
  EXPECT_FALSE(UniqueFd().duplicate().ok());
}

TEST(UniqueFdTest, PipeCarriesBytes) {
  auto pipe = makePipe();
  ASSERT_TRUE(pipe.ok());
  ASSERT_EQ(::write(pipe->write.get(), "hi", 2), 2);
  char buf[2];
  ASSERT_EQ(::read(pipe->read.get(), buf, 2), 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
}

}  // namespace
}  // namespace flotilla
