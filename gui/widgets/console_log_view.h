// ConsoleLogView: tails a VM's serial console log (ClusterService.GetVmConsoleLog) in a
// read-only monospace view. It makes no calls itself: it asks for data with readRequested and
// the owner answers with appendData or showError.
#pragma once

#include <QByteArray>
#include <QString>
#include <QStringDecoder>
#include <QWidget>

#include "flotilla/v1/cluster.pb.h"

class QCheckBox;
class QLabel;
class QPlainTextEdit;
class QPushButton;
class QTimer;

namespace flotilla::console {

// Child object names: "consoleText" (QPlainTextEdit), "follow" (QCheckBox), "clearConsole"
// (QPushButton), "consoleStatus" (QLabel).
//
// Reads: setVm asks for offset 0 at once; then, every pollIntervalMs (500 ms) while the view
// is visible, following, and no read is outstanding, it asks for nextOffset. A full chunk
// (>= kFullChunkBytes) is followed by the next read at once, to catch up with a long log.
// After showError it waits 1, 2, 4, ... up to 10 poll intervals before it asks again.
// Following off pauses reading and leaves the scroll position alone; on again reads at once
// and keeps the view at the bottom. A next_offset below the offset asked for means the log
// started over (the VM restarted): it is read again from 0 after a marker line.
//
// Text: bytes are decoded as UTF-8 (invalid bytes become U+FFFD; a sequence split between
// two reads is kept whole), \r is dropped (\r\n ends a line), ANSI escape sequences (colours,
// cursor moves) and other control characters except \n and \t are removed. At most
// maxChars characters are kept: the oldest whole lines go first.
class ConsoleLogView : public QWidget {
  Q_OBJECT

 public:
  static constexpr int kDefaultPollIntervalMs = 500;
  static constexpr qsizetype kDefaultMaxChars = 1024 * 1024;
  static constexpr qsizetype kFullChunkBytes = 64 * 1024;  // GetVmConsoleLog's default chunk

  explicit ConsoleLogView(QWidget* parent = nullptr);

  // Starts tailing `vm` from offset 0 (the text is cleared); empty: stops; the VM already
  // shown: nothing changes.
  void setVm(const QString& vm);
  QString vm() const { return vm_; }

  bool following() const;
  void setFollowing(bool following);
  void setPollIntervalMs(int interval_ms);
  void setMaxChars(qsizetype max_chars);

  quint64 nextOffset() const { return next_offset_; }
  bool readOutstanding() const { return outstanding_; }
  QString text() const;
  QString statusText() const;

  // What the poll timer does: asks for more when it should (tests call it directly).
  void tick();

 Q_SIGNALS:
  // Call GetVmConsoleLog(name = vm, offset) and answer with appendData or showError.
  void readRequested(const QString& vm, quint64 offset);

 public Q_SLOTS:
  // The answer to the outstanding read of `vm` (answers for another VM are ignored).
  void appendData(const QString& vm, const QByteArray& bytes, quint64 next_offset);
  // The same from GetVmConsoleLog's answer. When log.host differs from the previous answer's
  // host the VM moved: the new host's log is read from offset 0 (this answer is dropped).
  void appendLog(const QString& vm, const v1::VmConsoleLog& log);
  // The outstanding read of `vm` failed: shows `message`, retries later.
  void showError(const QString& vm, const QString& message);
  // Empties the view; reading goes on from where it was.
  void clearText();

 protected:
  void showEvent(QShowEvent* event) override;
  void hideEvent(QHideEvent* event) override;

 private:
  void requestRead();
  QString filter(const QString& decoded);
  void appendText(const QString& text);
  void updateStatus();
  void scrollToBottom();

  QString vm_;
  QString host_;  // the host whose agent answered last
  quint64 next_offset_ = 0;
  quint64 bytes_read_ = 0;
  bool outstanding_ = false;
  int failures_ = 0;       // reads failed in a row
  int backoff_ticks_ = 0;  // ticks to wait before the next read after a failure
  QString error_;          // the last failure's message (empty: the last read worked)
  qsizetype max_chars_ = kDefaultMaxChars;
  QStringDecoder decoder_{QStringDecoder::Utf8};
  // Where the filter is inside an escape sequence that a read split: none, after ESC, in a
  // CSI sequence (ESC [ ... final byte), in an OSC string (ESC ] ... BEL or ESC \).
  enum class EscapeState { kNone, kEscape, kCsi, kOsc, kOscEscape };
  EscapeState escape_ = EscapeState::kNone;

  QPlainTextEdit* text_;
  QCheckBox* follow_;
  QPushButton* clear_;
  QLabel* status_;
  QTimer* timer_;
};

}  // namespace flotilla::console
