// Logging in to an iSCSI LUN on the backend's service thread: TCP connect, login, TEST UNIT
// READY, READ CAPACITY(16), on the first login the VPD pages and opcode report that decide
// discard and write-zeroes, and with a generation the persistent reservation that fences
// older generations off the LUN (see iscsi.h, iscsi_fencing.h and docs/storage.md).
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/status.h"
#include "fmt/format.h"
#include "storage/iscsi.h"
#include "storage/iscsi_fencing.h"
#include "storage/iscsi_internal.h"

namespace flotilla::storage {

void IscsiBackend::startAttempt() {
  link_ = Link::kConnecting;
  phase_ = Phase::kTcp;
  unit_attentions_ = 0;
  suspect_ = false;
  attempt_deadline_ = systemClock().monotonicNow() + options_.connect_timeout;
  context_ = iscsi_create_context(options_.initiator_name.c_str());
  if (context_ == nullptr) {
    failAttempt(absl::InternalError(fmt::format("{}: cannot create an iSCSI context", url_)));
    return;
  }
  iscsi_set_targetname(context_, target_.c_str());
  iscsi_set_session_type(context_, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(context_, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  if (!user_.empty()) {
    iscsi_set_initiator_username_pwd(context_, user_.c_str(), password_.c_str());
  }
  iscsi_set_noautoreconnect(context_, 1);  // the backend reconnects itself (see the top)
  if (iscsi_connect_async(context_, portal_.c_str(), &IscsiBackend::onConnect, this) != 0) {
    failAttempt(phaseError(Phase::kTcp, contextError(context_)));
  }
}

void IscsiBackend::onConnect(iscsi_context* /*context*/, int status, void* /*data*/, void* self) {
  auto* backend = static_cast<IscsiBackend*>(self);
  if (backend->tearing_down_) return;
  if (backend->link_ == Link::kConnecting && backend->phase_ == Phase::kTcp) {
    backend->advanceLogin(status, nullptr);
  } else if (status != SCSI_STATUS_GOOD) {
    backend->suspect_ = true;  // libiscsi calls again when an established connection fails
  }
}

void IscsiBackend::onLoginStep(iscsi_context* /*context*/, int status, void* /*data*/, void* self) {
  auto* backend = static_cast<IscsiBackend*>(self);
  scsi_task* task = std::exchange(backend->phase_task_, nullptr);
  backend->advanceLogin(status, task);
}

void IscsiBackend::failAttempt(absl::Status status) {
  if (!attempt_failure_) attempt_failure_ = std::move(status);
}

void IscsiBackend::advanceLogin(int status, scsi_task* task) {
  TaskPtr owned(task);
  if (tearing_down_ || attempt_failure_) return;
  auto send = [this](scsi_task* next) { sendStep(next); };
  // After the capacity: the optional VPD pages and the opcode report, each when it applies.
  auto continueFrom = [&](Phase done) {
    if (done < Phase::kBlockLimits && has_block_limits_page_) {
      phase_ = Phase::kBlockLimits;
      send(iscsi_inquiry_task(context_, lun_, 1, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS, 255,
                              &IscsiBackend::onLoginStep, this));
    } else if (done < Phase::kProvisioning && has_provisioning_page_) {
      phase_ = Phase::kProvisioning;
      send(iscsi_inquiry_task(context_, lun_, 1, SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING,
                              255, &IscsiBackend::onLoginStep, this));
    } else if (done < Phase::kSupportedOps && !write_zeroes_.load()) {
      phase_ = Phase::kSupportedOps;
      send(iscsi_report_supported_opcodes_task(context_, lun_, 0, 1, kWriteSame16Opcode, 0, 512,
                                               &IscsiBackend::onLoginStep, this));
    } else {
      loginDone();
    }
  };
  // The optional steps accept GOOD and CHECK CONDITION (not supported); anything else is the
  // transport failing.
  const bool answered = status == SCSI_STATUS_GOOD || status == SCSI_STATUS_CHECK_CONDITION;
  switch (phase_) {
    case Phase::kTcp:
      if (status != SCSI_STATUS_GOOD) {
        failAttempt(phaseError(phase_, contextError(context_)));
        return;
      }
      phase_ = Phase::kLogin;
      if (iscsi_login_async(context_, &IscsiBackend::onLoginStep, this) != 0) {
        failAttempt(phaseError(phase_, contextError(context_)));
      }
      return;
    case Phase::kLogin:
      if (status != SCSI_STATUS_GOOD) {
        failAttempt(phaseError(phase_, contextError(context_)));
        return;
      }
      phase_ = Phase::kTestUnitReady;
      send(iscsi_testunitready_task(context_, lun_, &IscsiBackend::onLoginStep, this));
      return;
    case Phase::kTestUnitReady:
      if (status == SCSI_STATUS_CHECK_CONDITION && owned != nullptr &&
          owned->sense.key == SCSI_SENSE_UNIT_ATTENTION &&
          ++unit_attentions_ <= kMaxUnitAttentions) {
        send(iscsi_testunitready_task(context_, lun_, &IscsiBackend::onLoginStep, this));
        return;
      }
      if (status != SCSI_STATUS_GOOD) {
        failAttempt(phaseError(phase_, owned != nullptr && status == SCSI_STATUS_CHECK_CONDITION
                                           ? senseText(owned.get())
                                           : contextError(context_)));
        return;
      }
      phase_ = Phase::kCapacity;
      send(iscsi_readcapacity16_task(context_, lun_, &IscsiBackend::onLoginStep, this));
      return;
    case Phase::kCapacity: {
      if (status != SCSI_STATUS_GOOD || owned == nullptr) {
        failAttempt(phaseError(phase_, owned != nullptr && status == SCSI_STATUS_CHECK_CONDITION
                                           ? senseText(owned.get())
                                           : contextError(context_)));
        return;
      }
      auto* capacity = static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(owned.get()));
      if (capacity == nullptr || capacity->block_length == 0) {
        failAttempt(phaseError(phase_, "the answer to READ CAPACITY(16) cannot be decoded"));
        return;
      }
      if (first_login_) {
        block_size_ = capacity->block_length;
        zero_block_.assign(block_size_, 0);
      } else if (capacity->block_length != block_size_) {
        failAttempt(absl::FailedPreconditionError(
            fmt::format("the block size of {} changed from {} to {} bytes; not using it", url_,
                        block_size_, capacity->block_length)));
        return;
      }
      size_bytes_.store((capacity->returned_lba + 1) * capacity->block_length,
                        std::memory_order_release);
      if (!first_login_) {
        loginDone();
        return;
      }
      phase_ = Phase::kVpdPages;
      send(iscsi_inquiry_task(context_, lun_, 1, SCSI_INQUIRY_PAGECODE_SUPPORTED_VPD_PAGES, 255,
                              &IscsiBackend::onLoginStep, this));
      return;
    }
    case Phase::kVpdPages:
      if (!answered) break;
      if (status == SCSI_STATUS_GOOD && owned != nullptr) {
        auto* pages =
            static_cast<scsi_inquiry_supported_pages*>(scsi_datain_unmarshall(owned.get()));
        for (int i = 0; pages != nullptr && i < pages->num_pages; ++i) {
          if (pages->pages[i] == SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS) has_block_limits_page_ = true;
          if (pages->pages[i] == SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING) {
            has_provisioning_page_ = true;
          }
        }
      }
      continueFrom(Phase::kVpdPages);
      return;
    case Phase::kBlockLimits:
      if (!answered) break;
      if (status == SCSI_STATUS_GOOD && owned != nullptr) {
        auto* limits = static_cast<scsi_inquiry_block_limits*>(scsi_datain_unmarshall(owned.get()));
        if (limits != nullptr) {
          max_transfer_blocks_ = limits->max_xfer_len;
          // 0xFFFFFFFF means "no limit" for UNMAP.
          max_unmap_blocks_ = limits->max_unmap == UINT32_MAX ? 0 : limits->max_unmap;
          max_write_same_blocks_ = limits->max_ws_len;
        }
      }
      continueFrom(Phase::kBlockLimits);
      return;
    case Phase::kProvisioning:
      if (!answered) break;
      if (status == SCSI_STATUS_GOOD && owned != nullptr) {
        auto* provisioning = static_cast<scsi_inquiry_logical_block_provisioning*>(
            scsi_datain_unmarshall(owned.get()));
        if (provisioning != nullptr) {
          discard_.store(provisioning->lbpu != 0);
          write_zeroes_.store(provisioning->lbpws != 0);
        }
      }
      continueFrom(Phase::kProvisioning);
      return;
    case Phase::kSupportedOps:
      if (!answered) break;
      if (status == SCSI_STATUS_GOOD && owned != nullptr) {
        auto* report = static_cast<scsi_report_supported_op_codes_one_command*>(
            scsi_datain_unmarshall(owned.get()));
        // SUPPORT 3: supported as the standard says; 5: in a vendor-specific way.
        if (report != nullptr && (report->support == 3 || report->support == 5)) {
          write_zeroes_.store(true);
        }
      }
      continueFrom(Phase::kSupportedOps);
      return;
    case Phase::kFencingReadKeys:
    case Phase::kFencingRegister:
    case Phase::kFencingCheckKeys:
    case Phase::kFencingPreempt:
    case Phase::kFencingReservation:
    case Phase::kFencingReserve:
      fencingStep(status, owned.get());
      return;
  }
  failAttempt(phaseError(phase_, contextError(context_)));
}

void IscsiBackend::sendStep(scsi_task* next) {
  if (next == nullptr) {
    failAttempt(phaseError(phase_, contextError(context_)));
  } else {
    phase_task_ = next;
  }
}

void IscsiBackend::loginDone() {
  if (fencing_key_ != 0) {
    startFencing();
  } else {
    connected();
  }
}

// --- Fencing by generation (iscsi_fencing.h, docs/storage.md) ------------------------------
//
// Every login (the first and each reconnect: a new session is a new I_T nexus, unregistered)
// reads the keys, registers this generation's key, reads the keys again and preempts the older
// generations' keys, then makes sure the LUN is reserved Write Exclusive - Registrants Only.
// Reading the keys again after registering closes the race with a newer opener: whichever of
// the two registers second sees the other's key on its second read (the newer preempts, the
// older refuses and closes its session before any write), so an older generation never writes
// under a newer one's reservation. Any surprise on the way (a key gone, a reservation taken
// meanwhile, a UNIT ATTENTION) starts the round over from the first read.

void IscsiBackend::startFencing() {
  fencing_rounds_ = 0;
  sendReadKeys(Phase::kFencingReadKeys);
}

void IscsiBackend::sendReadKeys(Phase phase) {
  phase_ = phase;
  sendStep(iscsi_persistent_reserve_in_task(context_, lun_, SCSI_PERSISTENT_RESERVE_READ_KEYS,
                                            kReadKeysBytes, &IscsiBackend::onLoginStep, this));
}

void IscsiBackend::sendFencingOut(int action, uint64_t service_action_key) {
  scsi_persistent_reserve_out_basic params{};  // copied into the command's data by libiscsi
  const bool register_only = action == SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY;
  params.reservation_key = register_only ? 0 : fencing_key_;  // ignored by that action
  params.service_action_reservation_key = service_action_key;
  const int type =
      register_only ? 0 : SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
  sendStep(iscsi_persistent_reserve_out_task(context_, lun_, action,
                                             SCSI_PERSISTENT_RESERVE_SCOPE_LU, type, &params,
                                             &IscsiBackend::onLoginStep, this));
}

void IscsiBackend::preemptNext() {
  if (to_preempt_.empty()) {
    phase_ = Phase::kFencingReservation;
    sendStep(
        iscsi_persistent_reserve_in_task(context_, lun_, SCSI_PERSISTENT_RESERVE_READ_RESERVATION,
                                         kReadReservationBytes, &IscsiBackend::onLoginStep, this));
    return;
  }
  phase_ = Phase::kFencingPreempt;
  sendFencingOut(SCSI_PERSISTENT_RESERVE_PREEMPT, to_preempt_.front());
}

void IscsiBackend::restartFencing(const std::string& why) {
  if (++fencing_rounds_ > kMaxFencingRounds) {
    failAttempt(phaseError(phase_, fmt::format("the LUN's registrations kept changing ({}); gave "
                                               "up after {} rounds",
                                               why, kMaxFencingRounds)));
    return;
  }
  log_.info("fencing: {}; reading the registrations again", why);
  sendReadKeys(Phase::kFencingReadKeys);
}

void IscsiBackend::fencingStep(int status, scsi_task* task) {
  const uint64_t generation = *options_.generation;
  // Another opener's PREEMPT or RESERVE shows here as a UNIT ATTENTION (the command did not
  // run): the registrations changed, so read them again.
  if (status == SCSI_STATUS_CHECK_CONDITION && task != nullptr &&
      task->sense.key == SCSI_SENSE_UNIT_ATTENTION) {
    restartFencing(fmt::format("the target reported {}", senseText(task)));
    return;
  }
  auto failed = [&] { failAttempt(phaseError(phase_, answerText(context_, status, task))); };
  switch (phase_) {
    case Phase::kFencingReadKeys:
    case Phase::kFencingCheckKeys: {
      if (status != SCSI_STATUS_GOOD || task == nullptr) return failed();
      auto* keys = static_cast<scsi_persistent_reserve_in_read_keys*>(scsi_datain_unmarshall(task));
      if (keys == nullptr || keys->num_keys < 0) {
        failAttempt(phaseError(phase_, "the answer to READ KEYS cannot be decoded"));
        return;
      }
      const size_t listed = static_cast<size_t>(keys->num_keys);
      if (keys->additional_length > listed * 8) {
        // A key left out could be a newer generation's: deciding on part of the list is unsafe.
        failAttempt(phaseError(
            phase_, fmt::format("the LUN has {} registrations, more than READ KEYS can list ({})",
                                keys->additional_length / 8, listed)));
        return;
      }
      FencingPlan plan = planFencing(std::span<const uint64_t>(keys->keys, listed), generation);
      if (plan.newer_generation) {
        if (!first_login_) {
          markFenced(fmt::format("generation {} is registered on the LUN, seen on reconnecting",
                                 *plan.newer_generation));
        }
        failAttempt(newerGenerationError(url_, generation, *plan.newer_generation));
        return;
      }
      if (phase_ == Phase::kFencingReadKeys) {
        phase_ = Phase::kFencingRegister;
        sendFencingOut(SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, fencing_key_);
        return;
      }
      to_preempt_ = std::move(plan.preempt);
      preemptNext();
      return;
    }
    case Phase::kFencingRegister:
      if (status != SCSI_STATUS_GOOD) return failed();
      sendReadKeys(Phase::kFencingCheckKeys);
      return;
    case Phase::kFencingPreempt: {
      const uint64_t key = to_preempt_.front();
      if (status == SCSI_STATUS_RESERVATION_CONFLICT) {
        // The key went away meanwhile (preempted by another opener of this generation), or
        // this session's own registration did.
        restartFencing(fmt::format("PREEMPT of key {:#x} met RESERVATION CONFLICT", key));
        return;
      }
      if (status != SCSI_STATUS_GOOD) return failed();
      log_.warn(
          "took the LUN over from generation {} (this VMM's is {}): every session of that "
          "generation is preempted and can no longer write",
          fencingGeneration(key).value_or(0), generation);
      to_preempt_.erase(to_preempt_.begin());
      preemptNext();
      return;
    }
    case Phase::kFencingReservation: {
      if (status != SCSI_STATUS_GOOD || task == nullptr) return failed();
      auto* reservation =
          static_cast<scsi_persistent_reserve_in_read_reservation*>(scsi_datain_unmarshall(task));
      if (reservation == nullptr) {
        failAttempt(phaseError(phase_, "the answer to READ RESERVATION cannot be decoded"));
        return;
      }
      if (!reservation->reserved) {
        phase_ = Phase::kFencingReserve;
        sendFencingOut(SCSI_PERSISTENT_RESERVE_RESERVE, 0);
        return;
      }
      if (reservation->reservation_key == fencing_key_) {
        connected();  // held by this generation (another session of it, e.g. a migration peer)
        return;
      }
      if (std::optional<uint64_t> holder = fencingGeneration(reservation->reservation_key)) {
        restartFencing(fmt::format("generation {} holds the reservation", *holder));
        return;
      }
      failAttempt(absl::FailedPreconditionError(fmt::format(
          "iSCSI LUN {} is reserved by key {:#x} (type {}), which is not Flotilla's: another "
          "initiator holds it; release that reservation or give the VM another LUN",
          url_, reservation->reservation_key, reservation->pr_type)));
      return;
    }
    case Phase::kFencingReserve:
      if (status == SCSI_STATUS_RESERVATION_CONFLICT) {
        restartFencing("another session reserved the LUN first");
        return;
      }
      if (status != SCSI_STATUS_GOOD) return failed();
      connected();
      return;
    default:
      failed();
      return;
  }
}

const char* IscsiBackend::phaseVerb() const {
  switch (phase_) {
    case Phase::kTcp:
      return "connecting";
    case Phase::kLogin:
      return "logging in";
    case Phase::kTestUnitReady:
      return "waiting for the LUN to be ready";
    case Phase::kCapacity:
      return "reading the LUN's capacity";
    case Phase::kVpdPages:
    case Phase::kBlockLimits:
    case Phase::kProvisioning:
    case Phase::kSupportedOps:
      return "reading the LUN's properties";
    case Phase::kFencingReadKeys:
    case Phase::kFencingRegister:
    case Phase::kFencingCheckKeys:
    case Phase::kFencingPreempt:
    case Phase::kFencingReservation:
    case Phase::kFencingReserve:
      return "taking the LUN's persistent reservation";
  }
  return "logging in";
}

absl::Status IscsiBackend::phaseError(Phase phase, const std::string& detail) const {
  switch (phase) {
    case Phase::kTcp:
      return absl::UnavailableError(fmt::format(
          "cannot reach iSCSI portal {} ({}): {}; is the target running and listening there?",
          portal_, url_, detail));
    case Phase::kLogin:
      if (absl::StrContains(absl::AsciiStrToLower(detail), "not found")) {
        return absl::NotFoundError(fmt::format(
            "iSCSI target {} is not known at portal {} ({}): {}; check the IQN (`tgtadm --lld "
            "iscsi --op show --mode target` lists a tgt target's)",
            target_, portal_, url_, detail));
      }
      return absl::PermissionDeniedError(fmt::format(
          "login to iSCSI target {} at {} refused ({}): {}; check the target's ACL for initiator "
          "{} and its CHAP settings",
          target_, portal_, url_, detail, options_.initiator_name));
    case Phase::kTestUnitReady:
      if (absl::StrContains(detail, "LOGICAL_UNIT_NOT_SUPPORTED")) {
        return absl::NotFoundError(
            fmt::format("iSCSI target {} at {} has no LUN {} ({}): {}; check the LUN number",
                        target_, portal_, lun_, url_, detail));
      }
      return absl::FailedPreconditionError(fmt::format(
          "LUN {} of iSCSI target {} is not ready ({}): {}", lun_, target_, url_, detail));
    case Phase::kCapacity:
      return absl::FailedPreconditionError(fmt::format(
          "cannot read the capacity of LUN {} of iSCSI target {} ({}): {}; is it a disk? (LUN 0 "
          "of a tgt target is its controller; disks start at 1)",
          lun_, target_, url_, detail));
    case Phase::kFencingReadKeys:
    case Phase::kFencingRegister:
    case Phase::kFencingCheckKeys:
    case Phase::kFencingPreempt:
    case Phase::kFencingReservation:
    case Phase::kFencingReserve:
      return absl::FailedPreconditionError(fmt::format(
          "cannot take the persistent reservation of iSCSI LUN {} for generation {} ({}): {}; "
          "fencing by generation needs a target with SCSI-3 persistent reservations (PERSISTENT "
          "RESERVE IN/OUT)",
          url_, options_.generation.value_or(0), phaseVerb(), detail));
    default:
      return absl::UnavailableError(
          fmt::format("reading the properties of iSCSI LUN {} failed: {}", url_, detail));
  }
}

void IscsiBackend::attemptFailed() {
  absl::Status status = std::move(*attempt_failure_);
  attempt_failure_.reset();
  if (context_ != nullptr) teardownContext();
  if (first_login_) {
    link_ = Link::kGaveUp;  // open() reports it; nothing more to do until shutdown
    open_status_ = std::move(status);
    opened_.Notify();
    return;
  }
  if (fenced()) {
    link_ = Link::kGaveUp;  // never again on this LUN (markFenced logged why)
    failWaiting();
    return;
  }
  link_ = Link::kIdle;
  next_attempt_at_ = systemClock().monotonicNow() + backoff_;
  log_.limited(error_limiter_, LogLevel::kWarn, "reconnecting failed: {}; next try in {}",
               status.message(), absl::FormatDuration(backoff_));
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void IscsiBackend::connected() {
  const absl::Duration now = systemClock().monotonicNow();
  link_ = Link::kConnected;
  backoff_ = kFirstBackoff;
  next_nop_at_ = now + kNopInterval;
  if (first_login_) {
    first_login_ = false;
    log_.info("logged in: {} bytes in {}-byte blocks, discard {}, write-zeroes {}{}",
              size_bytes_.load(), block_size_, discard_.load() ? "yes" : "no",
              write_zeroes_.load() ? "yes" : "no",
              fencing_key_ != 0 ? fmt::format(", reserved for generation {} (key {:#x})",
                                              *options_.generation, fencing_key_)
                                : std::string());
    open_status_ = absl::OkStatus();
    opened_.Notify();
    return;
  }
  reconnects_.fetch_add(1, std::memory_order_acq_rel);
  log_.info("reconnected after {}{}; sending {} commands again",
            absl::FormatDuration(outage_start_ ? now - *outage_start_ : absl::ZeroDuration()),
            fencing_key_ != 0 ? fmt::format(", the reservation taken again for generation {}",
                                            *options_.generation)
                              : std::string(),
            ready_.size());
  outage_start_.reset();
  outage_expired_ = false;
}

}  // namespace flotilla::storage
