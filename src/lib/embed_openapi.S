/*
 * A service's OpenAPI document, built into its binary so that the service
 * needs no file at run time. The Makefile assembles this once per service
 * with OPENAPI_FILE set to the path of openapi/<service>.json (a string);
 * the file's bytes, unchanged and without a terminating NUL, lie between
 * openapi_json_start and openapi_json_end (declared in service.h).
 */
    .section .rodata
    .global openapi_json_start
    .global openapi_json_end
openapi_json_start:
    .incbin OPENAPI_FILE
openapi_json_end:

    /* No executable stack is needed (the linker warns without this). */
    .section .note.GNU-stack, "", @progbits
