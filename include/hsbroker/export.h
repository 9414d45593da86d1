#ifndef HSBROKER_EXPORT_H
#define HSBROKER_EXPORT_H
#if defined(__GNUC__)
#define HS_EXPORT __attribute__((visibility("default")))
#else
#define HS_EXPORT
#endif
#endif
