// ConsoleLogView: when it asks for data (never twice at once), what it makes of the bytes
// (UTF-8, \r\n, escape sequences), the cap on its text, errors and retries.
#include <QCheckBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QScrollBar>
#include <QSignalSpy>
#include <QtTest/QTest>

#include "gui/widgets/console_log_view.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

const QString kVm = QStringLiteral("web-1");

// The offsets of the reads `spy` saw.
QList<quint64> offsets(const QSignalSpy& spy) {
  QList<quint64> result;
  for (const QList<QVariant>& call : spy) result.append(call.at(1).toULongLong());
  return result;
}

}  // namespace

class ConsoleLogViewTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void startReadsFromZero() {
    ConsoleLogView view;
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    QCOMPARE(reads.count(), 1);
    QCOMPARE(reads.at(0).at(0).toString(), kVm);
    QCOMPARE(reads.at(0).at(1).toULongLong(), 0u);
    QVERIFY(view.readOutstanding());
    view.setVm(kVm);  // the same VM: nothing changes
    QCOMPARE(reads.count(), 1);
  }

  void neverTwiceWhileAReadIsOutstanding() {
    ConsoleLogView view;
    view.show();
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    for (int i = 0; i < 5; ++i) view.tick();
    QCOMPARE(reads.count(), 1);

    view.appendData(kVm, QByteArray("hello\r\n"), 7);
    QVERIFY(!view.readOutstanding());
    QCOMPARE(view.nextOffset(), 7u);
    QCOMPARE(reads.count(), 1);  // a short answer: the next read waits for the timer
    view.tick();
    view.tick();
    QCOMPARE(offsets(reads), (QList<quint64>{0, 7}));
    view.appendData(kVm, QByteArray(), 7);
    view.tick();
    QCOMPARE(offsets(reads), (QList<quint64>{0, 7, 7}));
  }

  void theTimerAsksForTheNextOffset() {
    ConsoleLogView view;
    view.setPollIntervalMs(20);
    view.show();
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    // Answer each read with one line, as a server would.
    quint64 served = 0;
    connect(&view, &ConsoleLogView::readRequested, this, [&](const QString& vm, quint64 offset) {
      QCOMPARE(offset, served);
      if (served >= 30) return;  // leave the last read outstanding
      const QByteArray line = QByteArray("line ") + QByteArray::number(served) + "\n";
      served += static_cast<quint64>(line.size());
      QMetaObject::invokeMethod(
          &view, [&view, vm, line, served] { view.appendData(vm, line, served); },
          Qt::QueuedConnection);
    });
    view.setVm(kVm);
    QTRY_VERIFY_WITH_TIMEOUT(served >= 30, 10000);
    const qsizetype count = reads.count();
    QTest::qWait(100);  // several timer periods with the last read outstanding
    QCOMPARE(reads.count(), count);
    QVERIFY(view.text().startsWith(QStringLiteral("line 0\nline 7\n")));
  }

  void answersForAnotherVmAreIgnored() {
    ConsoleLogView view;
    view.setVm(QStringLiteral("old"));
    view.setVm(kVm);
    view.appendData(QStringLiteral("old"), QByteArray("stale"), 5);
    QVERIFY(view.readOutstanding());
    QCOMPARE(view.nextOffset(), 0u);
    QVERIFY(view.text().isEmpty());
    // An answer nobody asked for is ignored too.
    view.appendData(kVm, QByteArray("x"), 1);
    view.appendData(kVm, QByteArray("y"), 2);
    QCOMPARE(view.text(), QStringLiteral("x"));
  }

  void aFullChunkIsFollowedAtOnce() {
    ConsoleLogView view;
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    const QByteArray chunk(ConsoleLogView::kFullChunkBytes, 'a');
    view.appendData(kVm, chunk, quint64(chunk.size()));
    QCOMPARE(offsets(reads), (QList<quint64>{0, quint64(chunk.size())}));
  }

  void followingOffPausesReading() {
    ConsoleLogView view;
    view.show();
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    view.appendData(kVm, QByteArray("a\n"), 2);
    view.setFollowing(false);
    QVERIFY(!view.findChild<QCheckBox*>(QStringLiteral("follow"))->isChecked());
    view.tick();
    view.tick();
    QCOMPARE(reads.count(), 1);
    QVERIFY(view.statusText().contains(QStringLiteral("paused")));
    view.setFollowing(true);  // reads at once
    QCOMPARE(offsets(reads), (QList<quint64>{0, 2}));
  }

  void hiddenViewsDoNotPoll() {
    ConsoleLogView view;  // never shown
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    view.appendData(kVm, QByteArray("a\n"), 2);
    view.tick();
    QCOMPARE(reads.count(), 1);
    view.show();  // catches up when shown
    QCOMPARE(offsets(reads), (QList<quint64>{0, 2}));
  }

  void errorsAreShownAndRetriedLater() {
    ConsoleLogView view;
    view.show();
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    view.showError(kVm, QStringLiteral("vm web-1 runs on no host: start it first"));
    QVERIFY(!view.readOutstanding());
    QVERIFY2(view.statusText().contains(QStringLiteral("runs on no host")),
             qPrintable(view.statusText()));
    QVERIFY(view.statusText().contains(kVm));
    view.tick();  // waits one tick
    QCOMPARE(reads.count(), 1);
    view.tick();
    QCOMPARE(offsets(reads), (QList<quint64>{0, 0}));
    view.showError(kVm, QStringLiteral("unavailable"));  // second failure: two ticks
    view.tick();
    view.tick();
    QCOMPARE(reads.count(), 2);
    view.tick();
    QCOMPARE(reads.count(), 3);
    view.appendData(kVm, QByteArray("up\n"), 3);
    QVERIFY(!view.statusText().contains(QStringLiteral("unavailable")));
    view.tick();  // no more waiting after a success
    QCOMPARE(offsets(reads), (QList<quint64>{0, 0, 0, 3}));
  }

  void bytesBecomeText() {
    ConsoleLogView view;
    view.setVm(kVm);
    quint64 offset = 0;
    view.show();
    const auto feed = [&](const QByteArray& data) {
      offset += static_cast<quint64>(data.size());
      view.appendData(kVm, data, offset);
      view.tick();  // the next read
      QVERIFY(view.readOutstanding());
    };
    feed(QByteArray("boot\r\n"));
    feed(QByteArray("caf\xc3"));  // "é" split between two reads
    feed(QByteArray("\xa9 ok\r\n"));
    feed(QByteArray("bad \xff\xfe byte\n"));
    feed(QByteArray("\x1b[1;32mgreen\x1b[0m \x1b]0;title\x07plain\x1b(B\n"));
    feed(QByteArray("tab\there\x08\x07\0z\n", 13));
    feed(QByteArray("split \x1b["));
    feed(QByteArray("31mred\n"));
    const QString expected = QStringLiteral(
        "boot\ncafé ok\nbad \ufffd\ufffd byte\ngreen plain\n"
        "tab\therez\nsplit red\n");
    QCOMPARE(view.text(), expected);
  }

  void theTextIsCapped() {
    ConsoleLogView view;
    view.setMaxChars(100);
    view.setVm(kVm);
    QByteArray all;
    for (int i = 0; i < 50; ++i) all += "line " + QByteArray::number(i) + "\n";
    view.appendData(kVm, all, quint64(all.size()));
    const QString text = view.text();
    QVERIFY2(text.size() <= 100, qPrintable(QString::number(text.size())));
    QVERIFY2(text.startsWith(QStringLiteral("line ")), qPrintable(text));  // whole lines
    QVERIFY(text.endsWith(QStringLiteral("line 49\n")));
    QVERIFY(text.size() > 80);  // not more than a line too many was dropped

    // One long line without an end is cut inside.
    ConsoleLogView one_line;
    one_line.setMaxChars(10);
    one_line.setVm(kVm);
    one_line.appendData(kVm, QByteArray("abcdefghijklmnopqrstuvwxyz"), 26);
    QCOMPARE(one_line.text(), QStringLiteral("qrstuvwxyz"));
  }

  void followingKeepsTheViewAtTheBottom() {
    ConsoleLogView view;
    view.resize(400, 200);
    view.show();
    view.setVm(kVm);
    QByteArray all;
    for (int i = 0; i < 200; ++i) all += "line " + QByteArray::number(i) + "\n";
    view.appendData(kVm, all, quint64(all.size()));
    QScrollBar* bar =
        view.findChild<QPlainTextEdit*>(QStringLiteral("consoleText"))->verticalScrollBar();
    QVERIFY(bar->maximum() > 0);
    QCOMPARE(bar->value(), bar->maximum());
  }

  void aShorterLogStartsOver() {
    ConsoleLogView view;
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    view.show();
    view.appendData(kVm, QByteArray("first life\n"), 11);
    view.tick();
    // The VM restarted: its log is 4 bytes long now.
    view.appendData(kVm, QByteArray(), 4);
    QCOMPARE(offsets(reads), (QList<quint64>{0, 11, 0}));
    QVERIFY(view.text().contains(QStringLiteral("started over")));
  }

  void aMovedVmIsReadFromItsNewHost() {
    ConsoleLogView view;
    QSignalSpy reads(&view, &ConsoleLogView::readRequested);
    view.setVm(kVm);
    v1::VmConsoleLog log;
    log.set_data("on a\n");
    log.set_next_offset(5);
    log.set_host("host-a");
    view.show();
    view.appendLog(kVm, log);
    QCOMPARE(view.nextOffset(), 5u);
    QVERIFY(view.statusText().contains(QStringLiteral("host-a")));
    view.tick();
    log.set_data("xx\n");
    log.set_next_offset(8);
    log.set_host("host-b");
    view.appendLog(kVm, log);  // read at offset 5 of another file: dropped, read from 0
    QCOMPARE(offsets(reads), (QList<quint64>{0, 5, 0}));
    QVERIFY(!view.text().contains(QStringLiteral("xx")));
    log.set_data("booted on b\n");
    log.set_next_offset(12);
    view.appendLog(kVm, log);
    QVERIFY(view.text().endsWith(QStringLiteral("booted on b\n")));
    QVERIFY(view.text().contains(QStringLiteral("host-b")));
  }

  void viewRenders() {
    ConsoleLogView view;
    view.resize(640, 360);
    view.setVm(kVm);
    const QByteArray boot(
        "Flotilla test guest\r\nmemory: 256 MiB\r\nvirtio-blk: 1 device\r\nready\r\n");
    view.appendData(kVm, boot, quint64(boot.size()));
    QVERIFY(testing::rendersToPng(view, QStringLiteral("console-log-view")));
  }
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::ConsoleLogViewTest)
#include "console_log_view_test.moc"
