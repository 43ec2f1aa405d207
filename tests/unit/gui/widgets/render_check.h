// Checks that a widget renders on the offscreen platform: grab() it to a PNG (in a temporary
// directory, or in $FLOTILLA_SCREENSHOT_DIR when set, to keep the pictures for the docs) and
// check that the file is not empty and the picture is not one flat colour.
#pragma once

#include <QDir>
#include <QFileInfo>
#include <QImage>
#include <QPixmap>
#include <QSet>
#include <QString>
#include <QTemporaryDir>
#include <QWidget>
#include <QtTest/QTest>

namespace flotilla::console::testing {

// Use with QVERIFY(rendersToPng(widget, "name")).
inline bool rendersToPng(QWidget& widget, const QString& name) {
  const QByteArray keep = qgetenv("FLOTILLA_SCREENSHOT_DIR");
  QTemporaryDir temporary;
  const QString directory = keep.isEmpty() ? temporary.path() : QString::fromLocal8Bit(keep);
  if (!QDir().mkpath(directory)) {
    qWarning() << "cannot create" << directory;
    return false;
  }
  const QString path = QDir(directory).filePath(name + QStringLiteral(".png"));
  const QPixmap pixmap = widget.grab();
  if (pixmap.isNull() || !pixmap.save(path, "PNG")) {
    qWarning() << "cannot save the grab of" << widget.objectName() << "to" << path;
    return false;
  }
  const QImage image(path);
  if (QFileInfo(path).size() == 0 || image.isNull() || image.width() < 10 || image.height() < 10) {
    qWarning() << path << "is empty";
    return false;
  }
  QSet<QRgb> colours;
  for (int y = 0; y < image.height() && colours.size() < 3; y += 3) {
    for (int x = 0; x < image.width() && colours.size() < 3; x += 3)
      colours.insert(image.pixel(x, y));
  }
  if (colours.size() < 3) {
    qWarning() << path << "is blank";
    return false;
  }
  return true;
}

}  // namespace flotilla::console::testing
