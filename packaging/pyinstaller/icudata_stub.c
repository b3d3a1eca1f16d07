/* An empty ICU common data package, built in place of PySide6's 32 MB libicudata.so.NN
 * on Linux (packaging/pyinstaller/eid-agent.spec). Qt Core links ICU, but the PIN and
 * consent dialogs use nothing that needs ICU's data (Qt has its own locale, Unicode and
 * UTF-8 tables): an ICU service that would need data reports a missing resource and Qt
 * falls back. Layout: ICU's data header (MappedData + UDataInfo, padded to 32 bytes)
 * with the "CmnD" table-of-contents format, version 1, and zero entries.
 * ICUDATA_SYMBOL is defined by the build, e.g. icudt73_dat. */
#include <stdint.h>

struct empty_common_data {
    uint16_t header_size;
    uint8_t magic1, magic2;
    uint16_t info_size, info_reserved;
    uint8_t is_big_endian, charset_family, sizeof_uchar, reserved_byte;
    uint8_t data_format[4], format_version[4], data_version[4];
    uint8_t padding[8];
    uint32_t count;
};

__attribute__((visibility("default"), aligned(16)))
const struct empty_common_data ICUDATA_SYMBOL = {
    32, 0xda, 0x27,
    20, 0,
    0 /* little endian */, 0 /* ASCII family */, 2, 0,
    {'C', 'm', 'n', 'D'}, {1, 0, 0, 0}, {0, 0, 0, 0},
    {0}, 0,
};
