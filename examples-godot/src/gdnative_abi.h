/* gdnative_abi.h: the few declarations of Godot 3's GDNative C ABI that minerva_godot.c uses.
 *
 * These declarations mirror Godot 3.2's GDNative ABI (Godot and its GDNative headers are MIT
 * licensed, (c) Juan Linietsky, Ariel Manzur and contributors). They are written for this sample
 * and are not a copy of godot-headers: only the types and entries used here are declared, and the
 * unused entries of the function tables are padding of the same size.
 *
 * Checked against godotengine/godot-headers, tag godot-3.2.3-stable (commit
 * 815f34e1e96c09122449105c55aba501654da029): gdnative_api.json, gdnative_api_struct.gen.h,
 * gdnative/gdnative.h, gdnative/variant.h, gdnative/string.h, nativescript/godot_nativescript.h;
 * run on Debian's godot3-server 3.2.3. The core API 1.0 table (744 entries) is the same from Godot
 * 3.1 through 3.5 (same names, return and argument types, in the same order), so the slot numbers
 * below hold for every Godot 3.1+; Godot 3.0's table differs, and Godot 4 has another ABI
 * (GDExtension). The loader checks the versions it is given and refuses anything else.
 *
 * Layout notes (LP64 Linux): value types are opaque byte arrays exactly as Godot declares them,
 * because that decides how they are passed and returned by value (a 24-byte godot_variant goes
 * through a hidden pointer, an 8-byte godot_string in a register). Godot declares its calls
 * `__attribute__((sysv_abi))` on Linux, which is the default calling convention there.
 */
#ifndef MINERVA_GDNATIVE_ABI_H
#define MINERVA_GDNATIVE_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__linux__) || !defined(__LP64__)
#error "these GDNative declarations are checked for 64-bit Linux only"
#endif

/* ---- value types (gdnative/gdnative.h, variant.h, string.h, array.h, dictionary.h) ---- */

typedef bool godot_bool;
typedef int godot_int;
typedef float godot_real;
typedef void godot_object;

typedef struct { uint8_t _dont_touch_that[16 + sizeof(int64_t)]; } godot_variant;
typedef struct { uint8_t _dont_touch_that[sizeof(void *)]; } godot_string;
typedef struct { uint8_t _dont_touch_that[sizeof(void *)]; } godot_char_string;
typedef struct { uint8_t _dont_touch_that[sizeof(void *)]; } godot_array;
typedef struct { uint8_t _dont_touch_that[sizeof(void *)]; } godot_dictionary;

typedef enum godot_variant_type {
    GODOT_VARIANT_TYPE_NIL = 0,
    GODOT_VARIANT_TYPE_BOOL = 1,
    GODOT_VARIANT_TYPE_INT = 2,
    GODOT_VARIANT_TYPE_REAL = 3,
    GODOT_VARIANT_TYPE_STRING = 4,
    GODOT_VARIANT_TYPE_OBJECT = 17,
    GODOT_VARIANT_TYPE_DICTIONARY = 18,
    GODOT_VARIANT_TYPE_ARRAY = 19,
    GODOT_VARIANT_TYPE_POOL_STRING_ARRAY = 23,
} godot_variant_type;

/* ---- API tables (gdnative/gdnative.h) ---- */

typedef struct godot_gdnative_api_version {
    unsigned int major;
    unsigned int minor;
} godot_gdnative_api_version;

typedef struct godot_gdnative_api_struct godot_gdnative_api_struct;
struct godot_gdnative_api_struct {
    unsigned int type;
    godot_gdnative_api_version version;
    const godot_gdnative_api_struct *next;
};

enum { GDNATIVE_CORE = 0, GDNATIVE_EXT_NATIVESCRIPT = 1 };

struct godot_gdnative_core_api_struct;

typedef struct {
    godot_bool in_editor;
    uint64_t core_api_hash;
    uint64_t editor_api_hash;
    uint64_t no_api_hash;
    void (*report_version_mismatch)(const godot_object *p_library, const char *p_what,
                                    godot_gdnative_api_version p_want, godot_gdnative_api_version p_have);
    void (*report_loading_error)(const godot_object *p_library, const char *p_what);
    godot_object *gd_native_library;
    const struct godot_gdnative_core_api_struct *api_struct;
    const godot_string *active_library_path;
} godot_gdnative_init_options;

typedef struct {
    godot_bool in_editor;
} godot_gdnative_terminate_options;

/* The core API, version 1.0: entries by their index in gdnative_api.json's "core" list. */
typedef struct godot_gdnative_core_api_struct {
    unsigned int type;
    godot_gdnative_api_version version;
    const godot_gdnative_api_struct *next;
    unsigned int num_extensions;
    const godot_gdnative_api_struct **extensions;

    void *slot_0_to_322[323]; /* color, vector2, quat, basis, ..., pool arrays */
    void (*godot_array_new)(godot_array *r_dest);                                       /* 323 */
    void *slot_324_to_332[9];
    godot_variant (*godot_array_get)(const godot_array *p_self, const godot_int p_idx); /* 333 */
    void *slot_334_to_335[2];
    void (*godot_array_append)(godot_array *p_self, const godot_variant *p_value);      /* 336 */
    void *slot_337_to_355[19];
    godot_int (*godot_array_size)(const godot_array *p_self);                           /* 356 */
    void *slot_357_to_360[4];
    void (*godot_array_destroy)(godot_array *p_self);                                   /* 361 */
    void (*godot_dictionary_new)(godot_dictionary *r_dest);                             /* 362 */
    void *slot_363[1];
    void (*godot_dictionary_destroy)(godot_dictionary *p_self);                         /* 364 */
    void *slot_365_to_371[7];
    godot_array (*godot_dictionary_keys)(const godot_dictionary *p_self);               /* 372 */
    void *slot_373[1];
    godot_variant (*godot_dictionary_get)(const godot_dictionary *p_self, const godot_variant *p_key); /* 374 */
    void (*godot_dictionary_set)(godot_dictionary *p_self, const godot_variant *p_key,
                                 const godot_variant *p_value);                         /* 375 */
    void *slot_376_to_506[131];
    godot_variant_type (*godot_variant_get_type)(const godot_variant *p_v);             /* 507 */
    void *slot_508[1];
    void (*godot_variant_new_nil)(godot_variant *r_dest);                               /* 509 */
    void (*godot_variant_new_bool)(godot_variant *r_dest, const godot_bool p_b);        /* 510 */
    void *slot_511[1];
    void (*godot_variant_new_int)(godot_variant *r_dest, const int64_t p_i);            /* 512 */
    void (*godot_variant_new_real)(godot_variant *r_dest, const double p_r);            /* 513 */
    void (*godot_variant_new_string)(godot_variant *r_dest, const godot_string *p_s);   /* 514 */
    void *slot_515_to_527[13];
    void (*godot_variant_new_dictionary)(godot_variant *r_dest, const godot_dictionary *p_dict); /* 528 */
    void *slot_529_to_536[8];
    godot_bool (*godot_variant_as_bool)(const godot_variant *p_self);                   /* 537 */
    void *slot_538[1];
    int64_t (*godot_variant_as_int)(const godot_variant *p_self);                       /* 539 */
    double (*godot_variant_as_real)(const godot_variant *p_self);                       /* 540 */
    godot_string (*godot_variant_as_string)(const godot_variant *p_self);               /* 541 */
    void *slot_542_to_554[13];
    godot_dictionary (*godot_variant_as_dictionary)(const godot_variant *p_self);       /* 555 */
    godot_array (*godot_variant_as_array)(const godot_variant *p_self);                 /* 556 */
    void *slot_557_to_569[13];
    void (*godot_variant_destroy)(godot_variant *p_self);                               /* 570 */
    godot_int (*godot_char_string_length)(const godot_char_string *p_cs);               /* 571 */
    const char *(*godot_char_string_get_data)(const godot_char_string *p_cs);           /* 572 */
    void (*godot_char_string_destroy)(godot_char_string *p_cs);                         /* 573 */
    void *slot_574_to_677[104];
    godot_char_string (*godot_string_utf8)(const godot_string *p_self);                 /* 678 */
    void *slot_679_to_681[3];
    godot_string (*godot_string_chars_to_utf8_with_len)(const char *p_utf8, godot_int p_len); /* 682 */
    void *slot_683_to_720[38];
    void (*godot_string_destroy)(godot_string *p_self);                                 /* 721 */
    void *slot_722_to_740[19];
    void (*godot_print_error)(const char *p_description, const char *p_function, const char *p_file,
                              int p_line);                                              /* 741 */
    void (*godot_print_warning)(const char *p_description, const char *p_function, const char *p_file,
                                int p_line);                                            /* 742 */
    void (*godot_print)(const godot_string *p_message);                                 /* 743, the last */
} godot_gdnative_core_api_struct;

/* Every declared entry sits at its index in the table of function pointers. */
#define GDN_SLOT(name, index)                                                                       \
    _Static_assert(offsetof(godot_gdnative_core_api_struct, name) ==                                \
                       offsetof(godot_gdnative_core_api_struct, slot_0_to_322) + (index) * sizeof(void *), \
                   #name " is not at slot " #index)
_Static_assert(offsetof(godot_gdnative_core_api_struct, slot_0_to_322) == 40, "core api header");
GDN_SLOT(godot_array_new, 323);
GDN_SLOT(godot_array_get, 333);
GDN_SLOT(godot_array_append, 336);
GDN_SLOT(godot_array_size, 356);
GDN_SLOT(godot_array_destroy, 361);
GDN_SLOT(godot_dictionary_new, 362);
GDN_SLOT(godot_dictionary_destroy, 364);
GDN_SLOT(godot_dictionary_keys, 372);
GDN_SLOT(godot_dictionary_get, 374);
GDN_SLOT(godot_dictionary_set, 375);
GDN_SLOT(godot_variant_get_type, 507);
GDN_SLOT(godot_variant_new_nil, 509);
GDN_SLOT(godot_variant_new_bool, 510);
GDN_SLOT(godot_variant_new_int, 512);
GDN_SLOT(godot_variant_new_real, 513);
GDN_SLOT(godot_variant_new_string, 514);
GDN_SLOT(godot_variant_new_dictionary, 528);
GDN_SLOT(godot_variant_as_bool, 537);
GDN_SLOT(godot_variant_as_int, 539);
GDN_SLOT(godot_variant_as_real, 540);
GDN_SLOT(godot_variant_as_string, 541);
GDN_SLOT(godot_variant_as_dictionary, 555);
GDN_SLOT(godot_variant_as_array, 556);
GDN_SLOT(godot_variant_destroy, 570);
GDN_SLOT(godot_char_string_length, 571);
GDN_SLOT(godot_char_string_get_data, 572);
GDN_SLOT(godot_char_string_destroy, 573);
GDN_SLOT(godot_string_utf8, 678);
GDN_SLOT(godot_string_chars_to_utf8_with_len, 682);
GDN_SLOT(godot_string_destroy, 721);
GDN_SLOT(godot_print_error, 741);
GDN_SLOT(godot_print_warning, 742);
GDN_SLOT(godot_print, 743);
_Static_assert(sizeof(godot_gdnative_core_api_struct) == 40 + 744 * sizeof(void *), "core api size");

/* ---- NativeScript 1.0 (nativescript/godot_nativescript.h) ---- */

typedef enum { GODOT_METHOD_RPC_MODE_DISABLED = 0 } godot_method_rpc_mode;

typedef struct {
    void *(*create_func)(godot_object *p_instance, void *p_method_data); /* returns user data */
    void *method_data;
    void (*free_func)(void *p_method_data);
} godot_instance_create_func;

typedef struct {
    void (*destroy_func)(godot_object *p_instance, void *p_method_data, void *p_user_data);
    void *method_data;
    void (*free_func)(void *p_method_data);
} godot_instance_destroy_func;

typedef struct {
    godot_method_rpc_mode rpc_type;
} godot_method_attributes;

typedef struct {
    godot_variant (*method)(godot_object *p_instance, void *p_method_data, void *p_user_data,
                            int p_num_args, godot_variant **p_args);
    void *method_data;
    void (*free_func)(void *p_method_data);
} godot_instance_method;

typedef struct godot_gdnative_ext_nativescript_api_struct {
    unsigned int type;
    godot_gdnative_api_version version;
    const godot_gdnative_api_struct *next;
    void (*godot_nativescript_register_class)(void *p_gdnative_handle, const char *p_name,
                                              const char *p_base, godot_instance_create_func p_create_func,
                                              godot_instance_destroy_func p_destroy_func);
    void *godot_nativescript_register_tool_class;
    void (*godot_nativescript_register_method)(void *p_gdnative_handle, const char *p_name,
                                               const char *p_function_name, godot_method_attributes p_attr,
                                               godot_instance_method p_method);
    void *godot_nativescript_register_property;
    void *godot_nativescript_register_signal;
    void *(*godot_nativescript_get_userdata)(godot_object *p_instance);
} godot_gdnative_ext_nativescript_api_struct;

_Static_assert(offsetof(godot_gdnative_ext_nativescript_api_struct, godot_nativescript_register_class) == 24,
               "nativescript api header");
_Static_assert(offsetof(godot_gdnative_ext_nativescript_api_struct, godot_nativescript_register_method) == 40,
               "register_method is the third entry");

#endif /* MINERVA_GDNATIVE_ABI_H */
