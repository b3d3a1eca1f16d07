/*
 * Test stand-in for the installed eid-agent.exe, for the MSI install test under Wine
 * (tests/e2e/test_msi_wine.py). It answers only the two command lines the MSI runs:
 *
 *   eid-agent.exe write-browser-policy --windows-registry --origins "LIST"
 *   eid-agent.exe write-browser-policy --windows-registry --remove
 *
 * and does what agent/tls/browser_policy.py (write_windows / remove_windows) does there:
 * LIST split on spaces, semicolons and commas; https origins only (lower case, no path, a
 * valid port, no ":443"; anything else skipped); duplicates dropped; for Chrome and Edge, each of
 * LocalNetworkAccessAllowedForUrls and LoopbackNetworkAllowedForUrls becomes exactly the
 * REG_SZ values "1".."n" (older numbered values removed, other names kept), or the key is
 * deleted when no origin is left. HKLM, 64-bit view. The test compares the result with the
 * Python writer's windows_lists(), so the two cannot drift apart unnoticed for its inputs.
 *
 * Built by the test with Debian's mingw-w64: x86_64-w64-mingw32-gcc -municode -O2 -o eid-agent.exe
 */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>
#include <wctype.h>

#define MAX_ORIGINS 64

static const wchar_t *KEYS[] = {
    L"SOFTWARE\\Policies\\Google\\Chrome\\LocalNetworkAccessAllowedForUrls",
    L"SOFTWARE\\Policies\\Google\\Chrome\\LoopbackNetworkAllowedForUrls",
    L"SOFTWARE\\Policies\\Microsoft\\Edge\\LocalNetworkAccessAllowedForUrls",
    L"SOFTWARE\\Policies\\Microsoft\\Edge\\LoopbackNetworkAllowedForUrls",
};

/* Canonical https origin in place, or 0 when the item is not one (as the agent's
 * normalize_origin: no path, query, fragment or user; a port 1..65535; ":443" dropped). */
static int canonical(wchar_t *item)
{
    wchar_t *host, *port, *p;
    long number;
    for (p = item; *p; p++)
        *p = towlower(*p);
    if (wcsncmp(item, L"https://", 8) != 0)
        return 0;
    host = item + 8;
    if (!*host || wcspbrk(host, L"/?#@\\ "))
        return 0;
    if (*host == L'[') {
        p = wcschr(host, L']');
        if (!p)
            return 0;
        port = *(p + 1) == L':' ? p + 1 : (*(p + 1) ? NULL : p + 1);
        if (!port)
            return 0;
    } else {
        port = wcschr(host, L':');
        if (!port)
            port = host + wcslen(host);
        if (port == host)
            return 0;
    }
    if (*port == L':') {
        if (!port[1] || wcsspn(port + 1, L"0123456789") != wcslen(port + 1) || wcslen(port + 1) > 5)
            return 0;
        number = wcstol(port + 1, NULL, 10);
        if (number < 1 || number > 65535)
            return 0;
        if (number == 443)
            *port = 0;
        else  /* no leading zeros: never longer than what it replaces */
            swprintf(port, 7, L":%ld", number);
    }
    return 1;
}

static void delete_key(const wchar_t *key)
{
    RegDeleteKeyExW(HKEY_LOCAL_MACHINE, key, KEY_WOW64_64KEY, 0);
}

static int replace_list(const wchar_t *key, wchar_t **values, int count)
{
    HKEY handle;
    wchar_t name[16];
    int i;
    if (RegCreateKeyExW(HKEY_LOCAL_MACHINE, key, 0, NULL, 0, KEY_ALL_ACCESS | KEY_WOW64_64KEY,
                        NULL, &handle, NULL) != ERROR_SUCCESS)
        return 0;
    for (i = 1;; i++) {
        swprintf(name, 16, L"%d", i);
        if (RegDeleteValueW(handle, name) != ERROR_SUCCESS)
            break;
    }
    for (i = 0; i < count; i++) {
        swprintf(name, 16, L"%d", i + 1);
        if (RegSetValueExW(handle, name, 0, REG_SZ, (const BYTE *)values[i],
                           (DWORD)((wcslen(values[i]) + 1) * sizeof(wchar_t))) != ERROR_SUCCESS) {
            RegCloseKey(handle);
            return 0;
        }
    }
    RegCloseKey(handle);
    return 1;
}

int wmain(int argc, wchar_t **argv)
{
    wchar_t *origins[MAX_ORIGINS], *item, *state = NULL;
    int count = 0, j, k, seen;
    if (argc == 4 && !wcscmp(argv[1], L"write-browser-policy") &&
        !wcscmp(argv[2], L"--windows-registry") && !wcscmp(argv[3], L"--remove")) {
        for (k = 0; k < 4; k++) {
            delete_key(KEYS[k]);
            wprintf(L"HKLM\\%ls\n", KEYS[k]);
        }
        return 0;
    }
    if (argc != 5 || wcscmp(argv[1], L"write-browser-policy") ||
        wcscmp(argv[2], L"--windows-registry") || wcscmp(argv[3], L"--origins")) {
        fwprintf(stderr, L"stand-in: unexpected command line\n");
        return 2;
    }
    for (item = wcstok_s(argv[4], L" \t\r\n;,", &state); item && count < MAX_ORIGINS;
         item = wcstok_s(NULL, L" \t\r\n;,", &state)) {
        if (!canonical(item))
            continue;
        for (seen = 0, j = 0; j < count; j++)
            seen |= !wcscmp(origins[j], item);
        if (!seen)
            origins[count++] = item;
    }
    for (k = 0; k < 4; k++) {
        if (count == 0)
            delete_key(KEYS[k]);
        else if (!replace_list(KEYS[k], origins, count))
            return 1;
        wprintf(L"HKLM\\%ls\n", KEYS[k]);
    }
    return 0;
}
