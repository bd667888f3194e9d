/*
 * A Windows service that stops at once with service-specific exit code 42: the "failed
 * service" of the Windows agent's units family, for the Wine prefix of the tests only (never
 * shipped). tests/windows/wine-prefix.sh builds it into C:\edgemon-test\failing-service.exe
 * and registers it as the demand-start service `edgemon-test-failing`; a test starts it
 * (`sc start edgemon-test-failing`, or StartServiceW) and then finds it stopped with
 * ERROR_SERVICE_SPECIFIC_ERROR, 42.
 */
#include <windows.h>

static SERVICE_STATUS_HANDLE status_handle;

static DWORD WINAPI control(DWORD code, DWORD type, LPVOID data, LPVOID context)
{
    (void)code; (void)type; (void)data; (void)context;
    return NO_ERROR;
}

static void WINAPI service_main(DWORD argc, LPWSTR *argv)
{
    (void)argc; (void)argv;
    status_handle = RegisterServiceCtrlHandlerExW(L"edgemon-test-failing", control, NULL);
    if (!status_handle)
        return;
    SERVICE_STATUS status = {0};
    status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    status.dwCurrentState = SERVICE_STOPPED;
    status.dwWin32ExitCode = ERROR_SERVICE_SPECIFIC_ERROR;
    status.dwServiceSpecificExitCode = 42;
    SetServiceStatus(status_handle, &status);
}

int main(void)
{
    SERVICE_TABLE_ENTRYW table[] = {
        {L"edgemon-test-failing", service_main},
        {NULL, NULL},
    };
    return StartServiceCtrlDispatcherW(table) ? 0 : 1;
}
