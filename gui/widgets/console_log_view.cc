// A VM's serial console, tailed through readRequested/appendData (see console_log_view.h).
#include "gui/widgets/console_log_view.h"

#include <QCheckBox>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QTextBlock>
#include <QTextCursor>
#include <QTextDocument>
#include <QTimer>
#include <QVBoxLayout>
#include <algorithm>

#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

constexpr int kMaxBackoffTicks = 10;
constexpr char16_t kEscape = 0x1b;
constexpr char16_t kBell = 0x07;

}  // namespace

ConsoleLogView::ConsoleLogView(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("consoleLogView"));
  text_ = new QPlainTextEdit(this);
  text_->setObjectName(QStringLiteral("consoleText"));
  text_->setReadOnly(true);
  text_->setUndoRedoEnabled(false);
  text_->setLineWrapMode(QPlainTextEdit::NoWrap);
  text_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  text_->setPlaceholderText(tr("No VM selected"));
  follow_ = new QCheckBox(tr("Follow"), this);
  follow_->setObjectName(QStringLiteral("follow"));
  follow_->setChecked(true);
  follow_->setToolTip(tr("Keep reading and stay at the end of the log"));
  clear_ = new QPushButton(tr("Clear"), this);
  clear_->setObjectName(QStringLiteral("clearConsole"));
  status_ = new QLabel(this);
  status_->setObjectName(QStringLiteral("consoleStatus"));
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  status_->setWordWrap(true);

  auto* bar = new QHBoxLayout;
  bar->addWidget(status_, 1);
  bar->addWidget(follow_);
  bar->addWidget(clear_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(bar);
  layout->addWidget(text_, 1);

  timer_ = new QTimer(this);
  timer_->setInterval(kDefaultPollIntervalMs);
  connect(timer_, &QTimer::timeout, this, &ConsoleLogView::tick);
  connect(follow_, &QCheckBox::toggled, this, [this](bool on) {
    updateStatus();
    if (!on) return;
    scrollToBottom();
    tick();
  });
  connect(clear_, &QPushButton::clicked, this, &ConsoleLogView::clearText);
  updateStatus();
}

void ConsoleLogView::setVm(const QString& vm) {
  if (vm == vm_) return;
  vm_ = vm;
  host_.clear();
  next_offset_ = 0;
  bytes_read_ = 0;
  outstanding_ = false;  // an answer about the previous VM is ignored
  failures_ = 0;
  backoff_ticks_ = 0;
  error_.clear();
  decoder_.resetState();
  escape_ = EscapeState::kNone;
  text_->clear();
  text_->setPlaceholderText(vm_.isEmpty() ? tr("No VM selected") : tr("Nothing written yet"));
  if (vm_.isEmpty()) {
    timer_->stop();
  } else {
    if (isVisible()) timer_->start();
    requestRead();
  }
  updateStatus();
}

bool ConsoleLogView::following() const {
  return follow_->isChecked();
}

void ConsoleLogView::setFollowing(bool following) {
  follow_->setChecked(following);
}

void ConsoleLogView::setPollIntervalMs(int interval_ms) {
  timer_->setInterval(std::max(interval_ms, 10));
}

void ConsoleLogView::setMaxChars(qsizetype max_chars) {
  max_chars_ = std::max<qsizetype>(max_chars, 1);
  appendText(QString());  // applies the new cap
}

QString ConsoleLogView::text() const {
  return text_->toPlainText();
}

QString ConsoleLogView::statusText() const {
  return status_->text();
}

void ConsoleLogView::tick() {
  if (vm_.isEmpty() || outstanding_ || !following() || !isVisible()) return;
  if (backoff_ticks_ > 0) {
    --backoff_ticks_;
    return;
  }
  requestRead();
}

void ConsoleLogView::appendLog(const QString& vm, const v1::VmConsoleLog& log) {
  if (vm != vm_ || !outstanding_) return;
  const QString host = fromProto(log.host());
  if (!host.isEmpty() && !host_.isEmpty() && host != host_) {
    // The VM moved: the new host's log is another file, read from its start. What came
    // back was read at the old host's offset and is dropped.
    host_ = host;
    outstanding_ = false;
    next_offset_ = 0;
    decoder_.resetState();
    escape_ = EscapeState::kNone;
    appendText(tr("\n--- %1 now runs on %2: its console log there follows ---\n").arg(vm_, host));
    requestRead();
    updateStatus();
    return;
  }
  if (!host.isEmpty()) host_ = host;
  appendData(vm, QByteArray(log.data().data(), static_cast<qsizetype>(log.data().size())),
             log.next_offset());
}

void ConsoleLogView::appendData(const QString& vm, const QByteArray& bytes, quint64 next_offset) {
  if (vm != vm_ || !outstanding_) return;
  outstanding_ = false;
  failures_ = 0;
  backoff_ticks_ = 0;
  error_.clear();
  const quint64 requested = next_offset_;
  if (next_offset < requested) {
    // The log is shorter than what was read: it was started over (the VM restarted).
    next_offset_ = 0;
    decoder_.resetState();
    escape_ = EscapeState::kNone;
    appendText(tr("\n--- the console log of %1 started over ---\n").arg(vm_));
    requestRead();
    updateStatus();
    return;
  }
  next_offset_ = next_offset;
  bytes_read_ += static_cast<quint64>(bytes.size());
  appendText(filter(decoder_.decode(bytes)));
  if (bytes.size() >= kFullChunkBytes && following()) {
    requestRead();  // more is waiting
  }
  updateStatus();
}

void ConsoleLogView::showError(const QString& vm, const QString& message) {
  if (vm != vm_ || !outstanding_) return;
  outstanding_ = false;
  ++failures_;
  backoff_ticks_ = std::min(1 << std::min(failures_ - 1, 4), kMaxBackoffTicks);
  error_ = message;
  updateStatus();
}

void ConsoleLogView::clearText() {
  text_->clear();
}

void ConsoleLogView::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (vm_.isEmpty()) return;
  timer_->start();
  tick();
}

void ConsoleLogView::hideEvent(QHideEvent* event) {
  QWidget::hideEvent(event);
  timer_->stop();
}

void ConsoleLogView::requestRead() {
  outstanding_ = true;  // before the signal: its receiver may answer at once
  Q_EMIT readRequested(vm_, next_offset_);
}

QString ConsoleLogView::filter(const QString& decoded) {
  QString out;
  out.reserve(decoded.size());
  for (QChar c : decoded) {
    const char16_t u = c.unicode();
    switch (escape_) {
      case EscapeState::kNone:
        if (u == kEscape) {
          escape_ = EscapeState::kEscape;
        } else if (u == u'\n' || u == u'\t') {
          out.append(c);
        } else if (u < 0x20 || u == 0x7f || (u >= 0x80 && u < 0xa0)) {
          // \r (of \r\n or a lone one), backspace, bell, NUL, C1 controls: dropped.
        } else {
          out.append(c);
        }
        break;
      case EscapeState::kEscape:
        if (u == u'[') {
          escape_ = EscapeState::kCsi;
        } else if (u == u']') {
          escape_ = EscapeState::kOsc;
        } else if (u >= 0x20 && u <= 0x2f) {
          // An intermediate byte (ESC ( B): the final byte follows.
        } else {
          escape_ = EscapeState::kNone;
        }
        break;
      case EscapeState::kCsi:
        if (u >= 0x40 && u <= 0x7e) {
          escape_ = EscapeState::kNone;
        } else if (u == u'\n') {  // a broken sequence: do not swallow the line
          escape_ = EscapeState::kNone;
          out.append(c);
        }
        break;
      case EscapeState::kOsc:
        if (u == kBell) {
          escape_ = EscapeState::kNone;
        } else if (u == kEscape) {
          escape_ = EscapeState::kOscEscape;
        } else if (u == u'\n') {
          escape_ = EscapeState::kNone;
          out.append(c);
        }
        break;
      case EscapeState::kOscEscape:
        escape_ = u == u'\\' ? EscapeState::kNone : EscapeState::kOsc;
        break;
    }
  }
  return out;
}

void ConsoleLogView::appendText(const QString& text) {
  QTextDocument* document = text_->document();
  if (!text.isEmpty()) {
    QTextCursor cursor(document);
    cursor.movePosition(QTextCursor::End);
    cursor.insertText(text);
  }
  // characterCount() counts the final paragraph separator too.
  const qsizetype excess = static_cast<qsizetype>(document->characterCount()) - 1 - max_chars_;
  if (excess > 0) {
    // Drop whole lines: up to the end of the line holding the first character to keep.
    const QTextBlock block = document->findBlock(static_cast<int>(excess));
    int end = block.position() + block.length();
    const int last = document->characterCount() - 1;
    if (!block.next().isValid() || end > last) end = static_cast<int>(excess);  // one long line
    QTextCursor cursor(document);
    cursor.setPosition(0);
    cursor.setPosition(end, QTextCursor::KeepAnchor);
    cursor.removeSelectedText();
  }
  if (following()) scrollToBottom();
}

void ConsoleLogView::updateStatus() {
  QString status;
  if (vm_.isEmpty()) {
    status = tr("No VM selected");
  } else if (!error_.isEmpty()) {
    status =
        tr("Reading the console of %1 failed: %2 — retrying in %3 s")
            .arg(vm_, error_)
            .arg(static_cast<double>(backoff_ticks_ + 1) * timer_->interval() / 1000.0, 0, 'f', 1);
  } else {
    status = tr("%1%2 · %3 read · %4")
                 .arg(vm_, host_.isEmpty() ? QString() : tr(" on %1").arg(host_),
                      formatBytes(bytes_read_), following() ? tr("following") : tr("paused"));
  }
  status_->setStyleSheet(error_.isEmpty() ? QString() : QStringLiteral("color: #c62828;"));
  status_->setText(status);
}

void ConsoleLogView::scrollToBottom() {
  QScrollBar* bar = text_->verticalScrollBar();
  bar->setValue(bar->maximum());
}

}  // namespace flotilla::console
