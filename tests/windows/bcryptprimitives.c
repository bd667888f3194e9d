/*
 * A stand-in for Windows' bcryptprimitives.dll, for the Wine prefix of the tests only (never
 * shipped, never uploaded to a host): Rust >= 1.78's std takes its random numbers from
 * ProcessPrng, which Wine 8 does not have, so a Rust .exe exits with code 53 before main.
 * ProcessPrng here fills the buffer from BCryptGenRandom with the system RNG, which Wine has.
 * tests/windows/wine-prefix.sh builds it into the prefix's system32 and sets the
 * `bcryptprimitives` DLL override to native in the prefix's registry.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
